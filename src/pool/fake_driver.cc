#include "pool/fake_driver.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <vector>

#include "base/fd.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"
#include "sandbox/run_policy.h"

namespace wb::pool {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using Socket = asio::local::stream_protocol::socket;

namespace {

struct BlockedExec {
  std::shared_ptr<Socket> sock;
  bool finished = false;
};

asio::awaitable<Result<proto::Frame>> ReadFrame(Socket& s) {
  unsigned char hdr[proto::kHeaderSize];
  error_code ec;
  co_await asio::async_read(s, asio::buffer(hdr), redirect_error(use_awaitable, ec));
  if (ec) co_return Fail("fake agent read", "", ec.message());
  uint32_t n =
      (uint32_t{hdr[1]} << 24) | (uint32_t{hdr[2]} << 16) | (uint32_t{hdr[3]} << 8) | hdr[4];
  std::string payload(n, '\0');
  if (n) {
    co_await asio::async_read(s, asio::buffer(payload), redirect_error(use_awaitable, ec));
    if (ec) co_return Fail("fake agent read", "", ec.message());
  }
  co_return proto::Frame{static_cast<proto::FrameType>(hdr[0]), std::move(payload)};
}

asio::awaitable<void> Write(Socket& s, std::string data) {
  error_code ec;
  co_await asio::async_write(s, asio::buffer(data), redirect_error(use_awaitable, ec));
}

std::string ExitFrame(int code) {
  proto::ExecExit e;
  e.exit_code = code;
  return proto::EncodeFrame(proto::FrameType::kExit, proto::ToJson(e));
}

}  // namespace

struct FakeDriver::LoopState {
  size_t execs = 0;
  size_t killed = 0;
  std::vector<std::shared_ptr<BlockedExec>> blocked;
};

// One sandbox's agent, on the loop thread.
struct FakeDriver::Agent : std::enable_shared_from_this<Agent> {
  Agent(asio::io_context& io, std::shared_ptr<LoopState> st, bool hung, std::string path)
      : acceptor(io), st(std::move(st)), hung(hung), path(std::move(path)) {}

  void Start(int fd) {
    error_code ec;
    acceptor.assign(asio::local::stream_protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    asio::co_spawn(acceptor.get_executor(), Accept(shared_from_this()), asio::detached);
  }

  // The sandbox is destroyed: its listener and connections go, as a real
  // agent's do.
  void Stop() {
    error_code ec;
    acceptor.close(ec);
    for (auto& c : conns) c->close(ec);
    conns.clear();
    ::unlink(path.c_str());
  }

  static asio::awaitable<void> Accept(std::shared_ptr<Agent> self) {
    for (;;) {
      error_code ec;
      auto s = std::make_shared<Socket>(
          co_await self->acceptor.async_accept(redirect_error(use_awaitable, ec)));
      if (ec) co_return;
      self->conns.push_back(s);
      // A hung agent keeps the connection open and never reads it.
      if (!self->hung) asio::co_spawn(s->get_executor(), Serve(self, s), asio::detached);
    }
  }

  static asio::awaitable<void> Serve(std::shared_ptr<Agent> self, std::shared_ptr<Socket> s) {
    for (;;) {
      auto f = co_await ReadFrame(*s);
      if (!f.ok()) co_return;
      if (f->type == proto::FrameType::kHeartbeat) {
        co_await Write(*s, proto::EncodeFrame(proto::FrameType::kHeartbeatReply, R"({"pid":1})"));
        continue;
      }
      if (f->type != proto::FrameType::kExec) continue;  // stdin frames: ignored
      ++self->st->execs;
      auto req = proto::ParseExecRequest(f->payload);
      if (!req.ok() || req->argv.empty()) {
        co_await Write(*s, proto::EncodeFrame(proto::FrameType::kFailure, "bad exec request"));
        co_return;
      }
      const auto& argv = req->argv;
      if (argv[0] == "echo") {
        std::string out;
        for (size_t i = 1; i < argv.size(); ++i) out += (i > 1 ? " " : "") + argv[i];
        co_await Write(*s,
                       proto::EncodeFrame(proto::FrameType::kStdout, out + "\n") + ExitFrame(0));
      } else if (argv[0] == "exit" && argv.size() == 2) {
        co_await Write(*s, ExitFrame(static_cast<int>(ParseUint(argv[1], "exit").value())));
      } else if (argv[0] == "block") {
        co_await Block(self, s);
      } else {
        co_await Write(*s, ExitFrame(127));
      }
      co_return;  // one exec per connection
    }
  }

  // Waits for FinishBlockedExecs (which cancels the read) or a hang-up (the read ends).
  static asio::awaitable<void> Block(std::shared_ptr<Agent> self, std::shared_ptr<Socket> s) {
    auto b = std::make_shared<BlockedExec>();
    b->sock = s;
    self->st->blocked.push_back(b);
    char buf[256];
    error_code ec;
    while (!ec && !b->finished)
      co_await s->async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
    std::erase(self->st->blocked, b);
    if (b->finished) {
      co_await Write(*s, ExitFrame(0));
    } else {
      ++self->st->killed;
    }
  }

  asio::local::stream_protocol::acceptor acceptor;
  std::shared_ptr<LoopState> st;
  bool hung;
  std::string path;
  std::vector<std::shared_ptr<Socket>> conns;
};

namespace {

class FakeSandbox : public Sandbox {
 public:
  FakeSandbox(FakeDriver& driver, asio::io_context& io, std::string id, std::string path,
              std::shared_ptr<FakeDriver::Agent> agent)
      : driver_(driver), io_(io), id_(std::move(id)), path_(std::move(path)), agent_(agent) {}
  ~FakeSandbox() override { (void)Destroy(); }  // as a real sandbox: destroyed if still up

  const std::string& id() const override { return id_; }
  AgentEndpoint endpoint() const override { return AgentEndpoint{path_, -1}; }
  // The real run policy, on an image without defaults.
  Result<proto::ExecRequest> PrepareExec(const proto::ExecRequest& req) const override {
    return wb::PrepareExec(Image{}, req);
  }
  // The synchronous path (`warmbox run`) is not the pool's: the fake serves
  // its agent socket only.
  Result<ExecOutcome> Exec(const proto::ExecRequest&, ExecIo&) override {
    return Fail(ErrorCode::kFailedPrecondition, "exec", id_, "the fake sandbox has no sync path");
  }
  Result<void> SetLimits(const Limits&) override { return Ok(); }
  Result<void> Destroy() override {
    if (!agent_) return Ok();
    // The agent goes on the loop thread, which also drops the last reference.
    asio::post(io_, [a = std::move(agent_)] { a->Stop(); });
    driver_.Destroyed();
    return Ok();
  }

 private:
  FakeDriver& driver_;
  asio::io_context& io_;
  std::string id_, path_;
  std::shared_ptr<FakeDriver::Agent> agent_;
};

}  // namespace

FakeDriver::FakeDriver(asio::io_context& io, std::string dir)
    : io_(io), dir_(std::move(dir)), loop_(std::make_shared<LoopState>()) {}

FakeDriver::~FakeDriver() = default;

void FakeDriver::Push(FakeCreation c) {
  std::lock_guard lk(mu_);
  script_.push_back(c);
}

void FakeDriver::HoldCreations() {
  std::lock_guard lk(mu_);
  hold_ = true;
}

void FakeDriver::ReleaseCreations() {
  std::lock_guard lk(mu_);
  hold_ = false;
  cv_.notify_all();
}

bool FakeDriver::WaitHeld(size_t n) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, std::chrono::seconds(5), [&] { return held_ >= n; });
}

size_t FakeDriver::create_calls() const {
  std::lock_guard lk(mu_);
  return create_calls_;
}
size_t FakeDriver::created() const {
  std::lock_guard lk(mu_);
  return created_;
}
size_t FakeDriver::failed() const {
  std::lock_guard lk(mu_);
  return failed_;
}
size_t FakeDriver::destroyed() const {
  std::lock_guard lk(mu_);
  return destroyed_;
}
void FakeDriver::Destroyed() {
  std::lock_guard lk(mu_);
  ++destroyed_;
}

size_t FakeDriver::blocked_execs() const { return loop_->blocked.size(); }
size_t FakeDriver::killed() const { return loop_->killed; }
size_t FakeDriver::execs() const { return loop_->execs; }
void FakeDriver::FinishBlockedExecs() {
  for (auto& b : loop_->blocked) {
    b->finished = true;
    error_code ec;
    b->sock->cancel(ec);
  }
}

Result<std::unique_ptr<Sandbox>> FakeDriver::Create(const SandboxSpec& spec) {
  FakeCreation what;
  size_t n;
  {
    std::unique_lock lk(mu_);
    ++create_calls_;
    if (hold_) {
      ++held_;
      cv_.notify_all();
      cv_.wait(lk, [&] { return !hold_; });
      --held_;
    }
    what = script_.empty() ? FakeCreation::kHealthy : script_.front();
    if (!script_.empty()) script_.pop_front();
    if (what == FakeCreation::kFail) {
      ++failed_;
      return Fail(ErrorCode::kUnavailable, "fake create", spec.image, "a scripted failure");
    }
    n = ++next_id_;
  }
  std::string id = "fake-" + std::to_string(n);
  std::string path = dir_ + "/" + id + ".sock";
  auto agent = std::make_shared<Agent>(io_, loop_, what == FakeCreation::kHung, path);
  // A dead agent has no listener: connecting fails at once, as for a real
  // sandbox whose agent died.
  if (what != FakeCreation::kDead) {
    // The real agents' listener (plain syscalls: called on a creation thread).
    int fd = WB_TRY(ListenUnix(path)).release();
    asio::post(io_, [agent, fd] { agent->Start(fd); });
  }
  {
    std::lock_guard lk(mu_);
    ++created_;
  }
  return std::unique_ptr<Sandbox>(std::make_unique<FakeSandbox>(*this, io_, id, path, agent));
}

}  // namespace wb::pool
