// A VM clone's own identity, given by the host after the clone resumed from a
// template snapshot and before its first command (frame 'D', docs/protocol.md
// "Identity"). Every clone of a template starts with the template's memory:
// the same hostname, the same CRNG state and a wall clock stopped at the
// snapshot. This message makes each clone unique.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace wb::agent {

struct Identity {
  std::string sandbox_id;
  std::string hostname;
  std::string entropy;      // raw bytes from the host's getrandom (32..512)
  int64_t realtime_ns = 0;  // the host's CLOCK_REALTIME when it sent the message
};

// {"id":"...","hostname":"...","entropy":"<hex>","realtime_ns":N}. Pure.
[[nodiscard]] Result<Identity> ParseIdentity(std::string_view json);
std::string IdentityToJson(const Identity& id);

// Applies it in the guest: sethostname; RNDADDENTROPY of the bytes into
// /dev/random's pool, then RNDRESEEDCRNG so the next getrandom() output
// depends on them (adding entropy alone does not reseed the CRNG at once);
// clock_settime(CLOCK_REALTIME).
[[nodiscard]] Result<void> ApplyIdentity(const Identity& id);

}  // namespace wb::agent
