#include "daemon/e2b/envd.h"

#include "base/strings.h"
#include "daemon/http_api.h"

namespace wb::daemon::e2b {

Result<std::optional<std::string>> BasicAuthUser(std::optional<std::string_view> authorization) {
  if (!authorization) return std::optional<std::string>();
  std::string_view v = Trim(*authorization);
  constexpr std::string_view kBasic = "basic ";
  if (v.size() < kBasic.size() || AsciiLower(v.substr(0, kBasic.size())) != kBasic) {
    return Error{.call = "Authorization",
                 .arg = std::string(v.substr(0, v.find(' '))),
                 .detail = "envd takes 'Basic base64(user:)'",
                 .code = ErrorCode::kInvalidArgument};
  }
  auto decoded = Base64Decode(Trim(v.substr(kBasic.size())), "Authorization");
  if (!decoded.ok()) return decoded.error();
  std::string user = decoded->substr(0, decoded->find(':'));
  if (user.empty()) return std::optional<std::string>();
  return std::optional<std::string>(std::move(user));
}

std::string HomeOf(std::string_view user) {
  if (user.empty() || user == "root" || user == "0") return "/root";
  return "/home/" + std::string(user);
}

std::string ResolvePath(std::string_view path, std::string_view user) {
  if (!path.empty() && path.front() == '/') return std::string(path);
  std::string home = HomeOf(user);
  if (path.empty()) return home;
  return home + "/" + std::string(path);
}

}  // namespace wb::daemon::e2b
