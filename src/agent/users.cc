#include "agent/users.h"

#include <algorithm>
#include <optional>

#include "base/strings.h"

namespace wb::agent {
namespace {

struct PwEntry {
  std::string name;
  uid_t uid;
  gid_t gid;
  std::string home;
};
struct GrEntry {
  std::string name;
  gid_t gid;
  std::vector<std::string> members;
};

std::optional<uint32_t> Number(std::string_view s) {
  if (s.empty() || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > 0xfffffffeULL) return std::nullopt;
  return static_cast<uint32_t>(v);
}

std::vector<PwEntry> ParsePasswd(std::string_view text) {
  std::vector<PwEntry> out;
  for (const auto& line : Split(text, '\n')) {
    auto f = Split(line, ':');
    if (f.size() < 7) continue;
    auto uid = Number(f[2]);
    auto gid = Number(f[3]);
    if (!uid || !gid || f[0].empty()) continue;
    out.push_back({f[0], *uid, *gid, f[5]});
  }
  return out;
}

std::vector<GrEntry> ParseGroup(std::string_view text) {
  std::vector<GrEntry> out;
  for (const auto& line : Split(text, '\n')) {
    auto f = Split(line, ':');
    if (f.size() < 4) continue;
    auto gid = Number(f[2]);
    if (!gid || f[0].empty()) continue;
    GrEntry g{f[0], *gid, {}};
    if (!f[3].empty()) g.members = Split(f[3], ',');
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace

Result<Credentials> ResolveUser(std::string_view spec, std::string_view passwd,
                                std::string_view group) {
  auto users = ParsePasswd(passwd);
  auto groups = ParseGroup(group);
  std::string_view user_part = spec, group_part;
  if (size_t colon = spec.find(':'); colon != std::string_view::npos) {
    user_part = spec.substr(0, colon);
    group_part = spec.substr(colon + 1);
    if (group_part.empty()) return Fail("resolve user", std::string(spec), "empty group");
  }
  if (user_part.empty()) user_part = "root";

  Credentials c;
  const PwEntry* pw = nullptr;
  if (auto uid = Number(user_part)) {
    for (const auto& u : users) {
      if (u.uid == *uid) {
        pw = &u;
        break;
      }
    }
    c.uid = *uid;
    c.gid = pw ? pw->gid : *uid;
  } else {
    for (const auto& u : users) {
      if (u.name == user_part) {
        pw = &u;
        break;
      }
    }
    if (!pw) {
      if (user_part == "root") {
        c.uid = 0;  // an image without /etc/passwd still has root
        c.gid = 0;
      } else {
        return Fail("resolve user", std::string(user_part), "no such user in /etc/passwd");
      }
    } else {
      c.uid = pw->uid;
      c.gid = pw->gid;
    }
  }
  if (pw)
    c.home = pw->home.empty() ? "/" : pw->home;
  else if (c.uid == 0)
    c.home = "/root";

  if (!group_part.empty()) {
    if (auto gid = Number(group_part)) {
      c.gid = *gid;
    } else {
      auto it = std::find_if(groups.begin(), groups.end(),
                             [&](const GrEntry& g) { return g.name == group_part; });
      if (it == groups.end()) {
        return Fail("resolve user", std::string(group_part), "no such group in /etc/group");
      }
      c.gid = it->gid;
    }
  }
  if (pw) {
    for (const auto& g : groups) {
      if (std::find(g.members.begin(), g.members.end(), pw->name) != g.members.end() &&
          g.gid != c.gid) {
        c.groups.push_back(g.gid);
      }
    }
  }
  return c;
}

}  // namespace wb::agent
