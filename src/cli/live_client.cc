#include "cli/live_client.h"

#include <unistd.h>

#include <cerrno>

#include "daemon/client.h"
#include "daemon/server.h"

namespace wb::cli {

Result<LiveConn> LiveConn::Open(const std::string& socket, const nlohmann::json& request) {
  daemon::PoolClient client(socket);
  LiveConn c;
  c.fd_ = WB_TRY(client.OpenLive(request.dump()));
  return c;
}

Result<void> LiveConn::Send(proto::FrameType type, std::string_view payload) {
  return WriteAll(fd_.get(), proto::EncodeFrame(type, payload));
}

Result<bool> LiveConn::ReadSome() {
  char buf[256 * 1024];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", "daemon connection");
    if (n == 0) return false;
    WB_RETURN_IF_ERROR(dec_.Feed(std::string_view(buf, static_cast<size_t>(n))));
    return true;
  }
}

Result<proto::Frame> LiveConn::Next() {
  for (;;) {
    if (auto f = dec_.Next()) return std::move(*f);
    if (!WB_TRY(ReadSome())) {
      return Fail(ErrorCode::kUnavailable, "read", "daemon connection",
                  "closed before the operation finished (did the sandbox end?)");
    }
  }
}

Error OpError(const proto::Frame& f) {
  if (f.type == proto::FrameType::kOpError) {
    auto j = nlohmann::json::parse(f.payload, nullptr, false);
    if (j.is_object()) {
      std::string msg = j.value("message", f.payload);
      return Fail(ErrorCodeFromName(j.value("code", "internal")), "", "", msg);
    }
  }
  if (f.type == proto::FrameType::kFailure) return Fail("agent", "", f.payload);
  return Fail("agent", "", std::string("unexpected frame '") + static_cast<char>(f.type) + "'");
}

Result<std::string> Expect(LiveConn& c, proto::FrameType want) {
  proto::Frame f = WB_TRY(c.Next());
  if (f.type != want) return OpError(f);
  return std::move(f.payload);
}

std::optional<std::pair<std::string, std::string>> SplitRemote(const std::string& s) {
  // A local path with a colon is written ./a:b; an id has no '/'.
  size_t colon = s.find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  if (s.substr(0, colon).find('/') != std::string::npos) return std::nullopt;
  return std::pair{s.substr(0, colon), s.substr(colon + 1)};
}

std::string SocketOrDefault(const std::string& s) {
  return s.empty() ? daemon::DefaultSocketPath() : s;
}

}  // namespace wb::cli
