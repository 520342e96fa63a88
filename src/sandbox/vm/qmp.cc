#include "sandbox/vm/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "sandbox/agent_client.h"

namespace wb::vm {
namespace {

int64_t NowMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

Result<Qmp> Qmp::Connect(const std::string& socket_path, int timeout_ms) {
  Qmp q;
  q.path_ = socket_path;
  q.timeout_ms_ = timeout_ms;
  q.fd_ = WB_TRY(ConnectUnix(socket_path));
  auto greeting = WB_TRY(q.ReadMessage());
  if (!greeting.contains("QMP")) return Fail("qmp greeting", socket_path, greeting.dump());
  WB_TRY(q.Execute("qmp_capabilities"));
  return q;
}

Result<nlohmann::json> Qmp::ReadMessage() {
  const int64_t deadline = NowMs() + timeout_ms_;
  for (;;) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) return Fail("qmp", path_, "not JSON: " + line);
      return j;
    }
    int64_t left = deadline - NowMs();
    if (left <= 0)
      return Fail("qmp", path_, "no answer within " + std::to_string(timeout_ms_) + " ms");
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return Errno("poll", path_);
    if (r <= 0) continue;
    char b[4096];
    ssize_t n = ::read(fd_.get(), b, sizeof b);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", path_);
    if (n == 0) return Fail("qmp", path_, "QEMU closed the monitor");
    buf_.append(b, static_cast<size_t>(n));
  }
}

Result<nlohmann::json> Qmp::Execute(const std::string& cmd, const nlohmann::json& args) {
  nlohmann::json req = {{"execute", cmd}};
  if (!args.is_null()) req["arguments"] = args;
  std::string line = req.dump() + "\r\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("send", path_ + " (" + cmd + ")");
    off += static_cast<size_t>(n);
  }
  for (;;) {
    auto m = WB_TRY(ReadMessage());
    if (m.contains("event")) continue;
    if (m.contains("return")) return m["return"];
    if (m.contains("error")) return Fail("qmp " + cmd, path_, m["error"].value("desc", m.dump()));
    return Fail("qmp " + cmd, path_, "unexpected: " + m.dump());
  }
}

Result<void> Qmp::WaitMigration(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    auto r = WB_TRY(Execute("query-migrate"));
    std::string st = r.value("status", "");
    if (st == "completed") return Ok();
    if (st == "failed" || st == "cancelled")
      return Fail("migrate", path_, st + ": " + r.value("error-desc", std::string("no detail")));
    if (NowMs() > deadline)
      return Fail("migrate", path_,
                  "not completed within " + std::to_string(timeout_ms) + " ms (" + st + ")");
    // QEMU sends no event we could wait on without enabling the "events"
    // capability; a short sleep between queries bounds the cost (the save
    // of the device state takes ~25 ms).
    timespec ts{0, 5 * 1000 * 1000};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace wb::vm
