// A host uid range per sandbox (docs/security.md, "uid range per sandbox").
//
// The daemon's range starts at uid_base. Slot k is the 65536 ids
// [uid_base + k*65536, uid_base + (k+1)*65536). Slot 0 is the image store's:
// image layers on disk are owned by it, and the ns driver shows them to a
// sandbox through idmapped mounts (idmap_mount.h). Slots 1..slots are the
// sandboxes', one each, so what the kernel counts per host uid (pipe buffers,
// and, since each sandbox's user namespace is owned by its slot's root, every
// per-user-namespace count the kernel charges to the namespace's owner:
// inotify instances and watches, POSIX mqueue bytes, namespaces, processes)
// is the sandbox's own. slots == 0 is the shared mode of earlier versions:
// every sandbox on slot 0, owned by host root (kept for comparison: bench).
//
// Claims are files STATE/uid-slots/<k> holding the sandbox id, taken and
// dropped under the flock of STATE/uid-slots/.lock, so every warmbox process
// on the state dir (the daemon, `warmbox run`, gc) agrees on them; the sandbox
// dir records its slot too (uid_slot), so a live sandbox adopted by the next
// daemon keeps it. A claim whose sandbox dir is gone (a crash; gc removed the
// dir) is stale and is taken back by the next claim or by gc.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb {

// 128 sandbox slots: 129 * 65536 = 8454144 ids from uid_base, which fits the
// 10,000,000 ids between test ranges (tests/uid_ranges.h) and leaves the
// default range [1000000000, 1008454144) clear of anything else of warmbox.
inline constexpr uint32_t kDefaultUidSlots = 128;

// The host ids a daemon with these options uses: [uid_base, uid_base+span).
uint64_t UidSpan(uint32_t slots);
// The first host id of slot k.
uint32_t SlotBase(uint32_t uid_base, uint32_t slot);
// Refuses a range that does not fit below 2^32-1 (what --uid-slots names).
[[nodiscard]] Result<void> CheckUidSlots(uint32_t uid_base, uint32_t slots);

// --- pure planning (unit-tested) ---
struct SlotPlan {
  uint32_t slot = 0;            // the slot to claim (lowest free)
  std::vector<uint32_t> stale;  // claims to drop first: their sandbox is gone
};
// claims: slot -> sandbox id; live_ids: the sandbox dirs that exist.
// Fails (resource_exhausted) when every slot 1..slots is held by a live sandbox.
[[nodiscard]] Result<SlotPlan> PlanUidSlot(const std::map<uint32_t, std::string>& claims,
                                           const std::set<std::string>& live_ids, uint32_t slots);
// "3" -> 3; anything else (or 0, or > slots... not checked here) is an error naming path.
[[nodiscard]] Result<uint32_t> ParseUidSlot(const std::string& text, const std::string& path);

// --- the claims on disk ---
std::string UidSlotsDir(const std::string& state_dir);
// Claims the lowest free slot for the sandbox id (whose dir must exist) and
// records it in sandbox_dir/uid_slot.
[[nodiscard]] Result<uint32_t> ClaimUidSlot(const std::string& state_dir, uint32_t slots,
                                            const std::string& id, const std::string& sandbox_dir);
// The slot a sandbox dir records (Adopt); checks that the claim names it.
[[nodiscard]] Result<uint32_t> AdoptUidSlot(const std::string& state_dir, const std::string& id,
                                            const std::string& sandbox_dir);
// Drops the claim if it still names id.
[[nodiscard]] Result<void> ReleaseUidSlot(const std::string& state_dir, uint32_t slot,
                                          const std::string& id);
// gc: drops every claim whose sandbox dir is gone. Returns how many.
size_t SweepUidSlots(const std::string& state_dir);

}  // namespace wb
