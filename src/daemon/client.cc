#include "daemon/client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "sandbox/agent_client.h"

namespace wb::daemon {
namespace {

Result<std::string> ReadFrame(int fd, const std::string& what) {
  unsigned char hdr[4];
  size_t got = 0;
  while (got < sizeof hdr) {
    ssize_t n = ::read(fd, hdr + got, sizeof hdr - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", what);
    if (n == 0) return Fail("read", what, "the daemon closed the connection");
    got += static_cast<size_t>(n);
  }
  uint32_t len = WB_TRY(proto::DecodePoolLength(hdr, proto::kMaxResponse));
  std::string body(len, '\0');
  got = 0;
  while (got < len) {
    ssize_t n = ::read(fd, body.data() + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", what);
    if (n == 0) return Fail("read", what, "the daemon closed the connection mid-response");
    got += static_cast<size_t>(n);
  }
  return body;
}

}  // namespace

Result<void> CheckSocketOwner(const std::string& path, uid_t me) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  // The directory first: its owner decides who could have put the socket there.
  // stat follows symlinks, as connect does: it is what connect would reach.
  for (const auto& [p, what] : {std::pair{dir, "directory"}, std::pair{path, "socket"}}) {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // connect says "no daemon"
      return Errno("stat", p);
    }
    if (st.st_uid != 0 && st.st_uid != me) {
      return Fail(ErrorCode::kPermissionDenied, "pool", path,
                  std::string("refusing the socket: its ") + what + " " + p + " belongs to uid " +
                      std::to_string(st.st_uid) + ", neither root nor this user (uid " +
                      std::to_string(me) + "); another user may be posing as the daemon");
    }
  }
  return Ok();
}

Result<int> PoolClient::Connect() {
  WB_RETURN_IF_ERROR(CheckSocketOwner(socket_, ::geteuid()));
  auto fd = ConnectUnix(socket_);
  if (!fd.ok()) {
    if (fd.error().err == ENOENT || fd.error().err == ECONNREFUSED) {
      return Fail("pool", socket_,
                  "no daemon is serving this socket (start one with 'warmbox pool start')");
    }
    if (fd.error().err == EACCES) {
      return Fail("pool", socket_,
                  "permission denied (the socket is for root or its --socket-group)");
    }
    return fd.error();
  }
  return fd->release();
}

Result<std::string> PoolClient::RoundTrip(std::string_view request_json) {
  UniqueFd fd(WB_TRY(Connect()));
  WB_RETURN_IF_ERROR(WriteAll(fd.get(), proto::EncodePoolFrame(request_json)));
  return ReadFrame(fd.get(), socket_);
}

Result<proto::RunResponse> PoolClient::Run(
    proto::RunRequest req, const std::function<void(bool, std::string_view)>& on_chunk) {
  req.stream = static_cast<bool>(on_chunk);
  proto::PoolRequest pr;
  pr.op = proto::Op::kRun;
  pr.run = std::move(req);
  UniqueFd fd(WB_TRY(Connect()));
  WB_RETURN_IF_ERROR(WriteAll(fd.get(), proto::EncodePoolFrame(proto::ToJson(pr))));
  for (;;) {
    std::string body = WB_TRY(ReadFrame(fd.get(), socket_));
    auto f = WB_TRY(proto::ParseStreamFrame(body));
    if (f.kind == proto::StreamFrame::kFinal) return f.final;
    if (on_chunk) on_chunk(f.kind == proto::StreamFrame::kStderr, f.data);
  }
}

Result<UniqueFd> PoolClient::OpenLive(std::string_view request_json) {
  UniqueFd fd(WB_TRY(Connect()));
  WB_RETURN_IF_ERROR(WriteAll(fd.get(), proto::EncodePoolFrame(request_json)));
  std::string body = WB_TRY(ReadFrame(fd.get(), socket_));
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.value("ok", false)) return fd;
  if (!j.is_object() || !j.contains("error")) {
    return Fail("pool", socket_, "unexpected answer: " + body.substr(0, 200));
  }
  std::string kind = j.value("kind", "internal");
  std::string text = j["error"].is_string() ? j["error"].get<std::string>() : body;
  return Fail(ErrorCodeFromName(kind), "", "", text);
}

Result<std::vector<proto::ImageStat>> PoolClient::Status() {
  std::string body = WB_TRY(RoundTrip(R"({"op":"status"})"));
  return proto::ParseStatus(body);
}

Result<void> PoolClient::Stream(std::string_view request_json,
                                const std::function<bool(const std::string&)>& on_frame) {
  UniqueFd fd(WB_TRY(Connect()));
  WB_RETURN_IF_ERROR(WriteAll(fd.get(), proto::EncodePoolFrame(request_json)));
  for (;;) {
    std::string body = WB_TRY(ReadFrame(fd.get(), socket_));
    if (!on_frame(body)) return Ok();
  }
}

Result<void> PoolClient::Stop(bool keep_sandboxes) {
  std::string body = WB_TRY(
      RoundTrip(keep_sandboxes ? R"({"op":"stop","keep_sandboxes":true})" : R"({"op":"stop"})"));
  if (body.find("\"error\":null") == std::string::npos &&
      body.find("\"ok\":true") == std::string::npos) {
    return Fail("pool stop", socket_, body);
  }
  return Ok();
}

}  // namespace wb::daemon
