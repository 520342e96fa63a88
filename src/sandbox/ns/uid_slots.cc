#include "sandbox/ns/uid_slots.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/sandbox_dir.h"

namespace wb {

uint64_t UidSpan(uint32_t slots) { return (uint64_t{slots} + 1) * kUidCount; }

uint32_t SlotBase(uint32_t uid_base, uint32_t slot) { return uid_base + slot * kUidCount; }

Result<void> CheckUidSlots(uint32_t uid_base, uint32_t slots) {
  // uid 2^32-1 is (uid_t)-1, "no change" to set*id: never a sandbox's.
  if (uint64_t{uid_base} + UidSpan(slots) > 0xffffffffULL) {
    return Fail(ErrorCode::kInvalidArgument, "--uid-slots", std::to_string(slots),
                "uid base " + std::to_string(uid_base) + " + (" + std::to_string(slots) +
                    " + 1) * 65536 ids does not fit below 4294967295");
  }
  return Ok();
}

Result<SlotPlan> PlanUidSlot(const std::map<uint32_t, std::string>& claims,
                             const std::set<std::string>& live_ids, uint32_t slots) {
  SlotPlan plan;
  std::set<uint32_t> held;
  for (const auto& [slot, id] : claims) {
    if (live_ids.count(id)) {
      held.insert(slot);
    } else {
      plan.stale.push_back(slot);
    }
  }
  for (uint32_t k = 1; k <= slots; ++k) {
    if (!held.count(k)) {
      plan.slot = k;
      return plan;
    }
  }
  return Fail(ErrorCode::kResourceExhausted, "claim uid slot", std::to_string(slots) + " slots",
              "every sandbox uid range is in use (raise --uid-slots)");
}

Result<uint32_t> ParseUidSlot(const std::string& text, const std::string& path) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  auto v = ParseUint(t, path);
  if (!v.ok() || *v == 0 || *v > 0xffff) {
    return Fail(ErrorCode::kInvalidArgument, "parse uid slot", path,
                "expected a slot number 1-65535, got '" + t + "'");
  }
  return static_cast<uint32_t>(*v);
}

std::string UidSlotsDir(const std::string& state_dir) { return state_dir + "/uid-slots"; }

namespace {

std::vector<std::string> DirNames(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != ".." && n[0] != '.') out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// The claims on disk (unparseable names are not ours and are left alone).
std::map<uint32_t, std::string> ReadClaims(const std::string& dir) {
  std::map<uint32_t, std::string> claims;
  for (const auto& n : DirNames(dir)) {
    auto k = ParseUint(n, "slot");
    if (!k.ok() || *k == 0 || *k > 0xffff) continue;
    auto id = ReadFile(dir + "/" + n);
    claims[static_cast<uint32_t>(*k)] = id.ok() ? std::string(Trim(*id)) : "";
  }
  return claims;
}

std::set<std::string> LiveIds(const std::string& state_dir) {
  auto names = DirNames(SandboxesDir(state_dir));
  return {names.begin(), names.end()};
}

// A small file written in place: every reader of claims holds the lock, and a
// torn sandbox-dir record is refused by ParseUidSlot (no tmp + rename: creation
// time counts, bench/uid_slots_bench.cc).
Result<void> WriteSmallFile(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return Errno("open", path);
  if (::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    return Errno("write", path);
  }
  return Ok();
}

Result<UniqueFd> LockSlots(const std::string& state_dir) {
  const std::string dir = UidSlotsDir(state_dir);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Errno("mkdir", dir);
  return LockPath(UidSlotsDir(state_dir) + "/.lock", true);
}

}  // namespace

Result<uint32_t> ClaimUidSlot(const std::string& state_dir, uint32_t slots, const std::string& id,
                              const std::string& sandbox_dir) {
  const std::string dir = UidSlotsDir(state_dir);
  UniqueFd lock = WB_TRY(LockSlots(state_dir));
  SlotPlan plan = WB_TRY(PlanUidSlot(ReadClaims(dir), LiveIds(state_dir), slots));
  for (uint32_t k : plan.stale) (void)::unlink((dir + "/" + std::to_string(k)).c_str());
  // The sandbox dir records it first: a claim always has a dir naming it.
  WB_RETURN_IF_ERROR(WriteSmallFile(sandbox_dir + "/uid_slot", std::to_string(plan.slot) + "\n"));
  WB_RETURN_IF_ERROR(WriteSmallFile(dir + "/" + std::to_string(plan.slot), id + "\n"));
  return plan.slot;
}

Result<uint32_t> AdoptUidSlot(const std::string& state_dir, const std::string& id,
                              const std::string& sandbox_dir) {
  const std::string path = sandbox_dir + "/uid_slot";
  uint32_t slot = WB_TRY(ParseUidSlot(WB_TRY(ReadFile(path)), path));
  UniqueFd lock = WB_TRY(LockSlots(state_dir));
  const std::string claim = UidSlotsDir(state_dir) + "/" + std::to_string(slot);
  auto owner = ReadFile(claim);
  if (owner.ok() && Trim(*owner) != id) {
    return Fail(ErrorCode::kFailedPrecondition, "adopt uid slot", claim,
                "slot " + std::to_string(slot) + " is claimed by sandbox " +
                    std::string(Trim(*owner)) + ", not " + id);
  }
  // A claim lost (state dir tidied by hand): the slot is still this sandbox's.
  if (!owner.ok()) WB_RETURN_IF_ERROR(WriteSmallFile(claim, id + "\n"));
  return slot;
}

Result<void> ReleaseUidSlot(const std::string& state_dir, uint32_t slot, const std::string& id) {
  UniqueFd lock = WB_TRY(LockSlots(state_dir));
  const std::string claim = UidSlotsDir(state_dir) + "/" + std::to_string(slot);
  auto owner = ReadFile(claim);
  if (!owner.ok() || Trim(*owner) != id) return Ok();
  if (::unlink(claim.c_str()) != 0 && errno != ENOENT) return Errno("unlink", claim);
  return Ok();
}

size_t SweepUidSlots(const std::string& state_dir) {
  const std::string dir = UidSlotsDir(state_dir);
  if (!PathExists(dir)) return 0;
  auto lock = LockSlots(state_dir);
  if (!lock.ok()) return 0;
  auto live = LiveIds(state_dir);
  size_t n = 0;
  for (const auto& [slot, id] : ReadClaims(dir)) {
    if (live.count(id)) continue;
    if (::unlink((dir + "/" + std::to_string(slot)).c_str()) == 0) ++n;
  }
  return n;
}

}  // namespace wb
