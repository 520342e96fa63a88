// `-u USER` resolved by the agent against the image's /etc/passwd and
// /etc/group (ResolveUser): both files come from the image, i.e. are under
// the control of whoever built it.
//
// Input: the user spec on the first line, then the passwd text, a line "%%",
// and the group text.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/users.h"
#include "fuzz/fuzz_check.h"

using namespace wb::agent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string_view spec = text, passwd, group;
  if (size_t nl = text.find('\n'); nl != std::string_view::npos) {
    spec = text.substr(0, nl);
    passwd = text.substr(nl + 1);
    if (size_t sep = passwd.find("\n%%\n"); sep != std::string_view::npos) {
      group = passwd.substr(sep + 4);
      passwd = passwd.substr(0, sep + 1);
    }
  }

  auto c = ResolveUser(spec, passwd, group);
  if (!c.ok()) return 0;
  FUZZ_CHECK(!c->home.empty());
  FUZZ_CHECK(std::find(c->groups.begin(), c->groups.end(), c->gid) == c->groups.end());
  // A numeric user is that uid, whatever passwd says.
  std::string_view user = spec.substr(0, spec.find(':'));
  if (!user.empty() && user.size() <= 9 &&
      user.find_first_not_of("0123456789") == std::string_view::npos) {
    FUZZ_CHECK(c->uid == static_cast<uid_t>(std::stoul(std::string(user))));
  }
  // The same files resolve the same spec the same way.
  auto again = ResolveUser(spec, passwd, group);
  FUZZ_CHECK(again.ok() && again->uid == c->uid && again->gid == c->gid &&
             again->groups == c->groups && again->home == c->home);
  return 0;
}
