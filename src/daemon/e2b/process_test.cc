// envd's Process service: the pure parts (requests, events, headers), then
// ServeProcess on a local TCP server over a fake LiveService whose Connect
// reaches a real warmbox-agent spawned as a plain process (as
// http_live_test.cc), driven by a blocking Connect client.
#include "daemon/e2b/process.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/live_test_util.h"
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"
#include "daemon/http_api.h"
#include "tests/assert_ok.h"

namespace wb::daemon::e2b {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using tcp = asio::ip::tcp;

// --- pure parts -------------------------------------------------------------------

TEST(E2bProcessParseTest, StartTakesEveryField) {
  auto r = ParseStartRequest(
      R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"B":"2","A":"1"},)"
      R"("cwd":"work"},"stdin":false,"pty":{"size":{"cols":"100","rows":30}},"tag":"t",)"
      R"("unknownField":{"x":1}})");
  ASSERT_OK(r);
  EXPECT_EQ(r->cmd, "/bin/bash");
  EXPECT_EQ(r->args, (std::vector<std::string>{"-l", "-c", "echo hi"}));
  ASSERT_EQ(r->envs.size(), 2u);
  EXPECT_EQ(r->envs[0], (std::pair<std::string, std::string>{"A", "1"}));
  EXPECT_EQ(*r->cwd, "work");
  EXPECT_FALSE(r->stdin);
  EXPECT_TRUE(r->pty);
  EXPECT_EQ(r->cols, 100u);
  EXPECT_EQ(r->rows, 30u);
  EXPECT_EQ(r->tag, "t");

  // Absent stdin is open (envd), null is absent.
  auto min = ParseStartRequest(R"({"process":{"cmd":"ls","args":null},"pty":null})");
  ASSERT_OK(min);
  EXPECT_TRUE(min->stdin);
  EXPECT_FALSE(min->pty);
  EXPECT_FALSE(min->cwd);

  struct Case {
    const char* body;
    const char* want;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"{", "(message): not valid JSON"},
           {"[]", "(message): expected a JSON object"},
           {"{}", "(process): missing"},
           {R"({"process":{}})", "(process.cmd): missing"},
           {R"({"process":{"cmd":""}})", "(process.cmd): empty"},
           {R"({"process":{"cmd":1}})", "(process.cmd): expected a string"},
           {R"({"process":{"cmd":"x","args":"a"}})", "(process.args)"},
           {R"({"process":{"cmd":"x","envs":{"A=B":"c"}}})", "(process.envs)"},
           {R"({"process":{"cmd":"x","envs":{"A":1}}})", "(process.envs.A)"},
           {R"({"process":{"cmd":"x"},"stdin":"yes"})", "(stdin)"},
           {R"({"process":{"cmd":"x"},"pty":{"size":{"cols":0,"rows":1}}})", "(pty.size.cols)"},
           {R"({"process":{"cmd":"x"},"pty":{"size":{"cols":70000,"rows":1}}})", "(pty.size.cols)"},
           {R"({"process":{"cmd":"x"},"pty":{"size":{"cols":1}}})", "(pty.size.rows): missing"},
       }) {
    SCOPED_TRACE(c.body);
    auto e = ParseStartRequest(c.body);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(e.error().ToString().find(c.want), std::string::npos) << e.error().ToString();
  }
}

TEST(E2bProcessParseTest, SelectorsInputSignalUpdate) {
  auto sel = ParseSelectorRequest(R"({"process":{"pid":12}})");
  ASSERT_OK(sel);
  EXPECT_EQ(sel->pid, 12);
  auto str = ParseSelectorRequest(R"({"process":{"pid":"13"}})");
  ASSERT_OK(str);
  EXPECT_EQ(str->pid, 13);
  auto tag = ParseSelectorRequest(R"({"process":{"tag":"web"}})");
  ASSERT_OK(tag);
  EXPECT_EQ(tag->pid, 0);
  EXPECT_EQ(tag->tag, "web");
  for (const char* bad :
       {R"({})", R"({"process":{}})", R"({"process":{"pid":0}})", R"({"process":{"pid":-1}})",
        R"({"process":{"pid":1,"tag":"x"}})", R"({"process":{"pid":4294967296}})"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseSelectorRequest(bad).ok());
  }

  auto in = ParseSendInputRequest(R"({"process":{"pid":5},"input":{"stdin":"YWJjCg=="}})");
  ASSERT_OK(in);
  EXPECT_FALSE(in->pty);
  EXPECT_EQ(in->data, "abc\n");
  // URL-safe, unpadded: proto3 JSON takes both.
  auto pty = ParseSendInputRequest(R"({"process":{"pid":5},"input":{"pty":"_-8"}})");
  ASSERT_OK(pty);
  EXPECT_TRUE(pty->pty);
  EXPECT_EQ(pty->data, "\xff\xef");
  EXPECT_FALSE(ParseSendInputRequest(R"({"process":{"pid":5}})").ok());
  EXPECT_FALSE(ParseSendInputRequest(R"({"process":{"pid":5},"input":{}})").ok());
  EXPECT_FALSE(ParseSendInputRequest(R"({"process":{"pid":5},"input":{"stdin":"a"}})").ok());
  EXPECT_FALSE(ParseSendInputRequest(R"({"process":{"pid":5},"input":{"stdin":"a!=="}})").ok());

  EXPECT_EQ(ParseSendSignalRequest(R"({"process":{"pid":5},"signal":"SIGNAL_SIGKILL"})")->signal,
            9);
  EXPECT_EQ(ParseSendSignalRequest(R"({"process":{"pid":5},"signal":"SIGNAL_SIGTERM"})")->signal,
            15);
  EXPECT_EQ(ParseSendSignalRequest(R"({"process":{"pid":5},"signal":2})")->signal, 2);
  for (const char* bad :
       {R"({"process":{"pid":5}})", R"({"process":{"pid":5},"signal":0})",
        R"({"process":{"pid":5},"signal":"SIGNAL_UNSPECIFIED"})",
        R"({"process":{"pid":5},"signal":"KILL"})", R"({"process":{"pid":5},"signal":65})"}) {
    SCOPED_TRACE(bad);
    auto e = ParseSendSignalRequest(bad);
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.error().ToString().find("(signal)"), std::string::npos);
  }

  auto up = ParseUpdateRequest(R"({"process":{"pid":5},"pty":{"size":{"cols":100,"rows":30}}})");
  ASSERT_OK(up);
  ASSERT_TRUE(up->size);
  EXPECT_EQ(up->size->cols, 100u);
  EXPECT_EQ(up->size->rows, 30u);
  auto none = ParseUpdateRequest(R"({"process":{"pid":5}})");
  ASSERT_OK(none);
  EXPECT_FALSE(none->size);
}

TEST(E2bProcessParseTest, StartExecIsAKeptProcessOfTheUser) {
  StartRequest r;
  r.cmd = "/bin/bash";
  r.args = {"-l"};
  r.envs = {{"USER", "mine"}, {"A", "1"}};
  auto x = StartExec(r, "user", "", 60000);
  EXPECT_EQ(x.argv, (std::vector<std::string>{"/bin/bash", "-l"}));
  // The request's envs come last: they win in the agent's merge.
  EXPECT_EQ(x.env, (std::vector<std::string>{"USER=user", "LOGNAME=user", "USER=mine", "A=1"}));
  EXPECT_EQ(x.cwd, "/home/user");
  EXPECT_EQ(x.user, "user");
  EXPECT_EQ(x.timeout_ms, 60000u);
  EXPECT_TRUE(x.keep);
  EXPECT_TRUE(x.stdin);
  EXPECT_FALSE(x.tty);
  r.cwd = "work";
  r.stdin = false;
  r.pty = true;
  r.rows = 30;
  r.cols = 100;
  auto y = StartExec(r, "", "/srv", 0);
  EXPECT_EQ(y.cwd, "/root/work");
  EXPECT_TRUE(y.stdin);  // a terminal always takes input
  EXPECT_TRUE(y.tty);
  EXPECT_EQ(y.rows, 30u);
  EXPECT_EQ(y.env[0], "USER=root");
  r.cwd.reset();
  EXPECT_EQ(StartExec(r, "", "/srv", 0).cwd, "/srv");     // the sandbox's default
  EXPECT_EQ(StartExec(r, "1000", "", 0).env.size(), 2u);  // a uid has no name to give
}

TEST(E2bProcessParseTest, EventsAsEnvdWordsThem) {
  EXPECT_EQ(StartEventJson(12), R"({"event":{"start":{"pid":12}}})");
  EXPECT_EQ(DataEventJson("stdout", "hi\n"), R"({"event":{"data":{"stdout":"aGkK"}}})");
  EXPECT_EQ(KeepaliveEventJson(), R"({"event":{"keepalive":{}}})");
  proto::ExecExit ok;
  EXPECT_EQ(json::parse(EndEventJson(ok)),
            json::parse(R"({"event":{"end":{"exited":true,"status":"exit status 0"}}})"));
  proto::ExecExit three;
  three.exit_code = 3;
  EXPECT_EQ(json::parse(EndEventJson(three)),
            json::parse(R"({"event":{"end":{"exitCode":3,"exited":true,)"
                        R"("status":"exit status 3","error":"exit status 3"}}})"));
  proto::ExecExit killed;
  killed.exit_code = 137;
  killed.signal = 9;
  EXPECT_EQ(json::parse(EndEventJson(killed)),
            json::parse(R"({"event":{"end":{"exitCode":-1,"status":"signal: killed",)"
                        R"("error":"signal: killed"}}})"));
  EXPECT_EQ(GoSignalName(15), "terminated");
  EXPECT_EQ(GoSignalName(2), "interrupt");
  EXPECT_EQ(GoSignalName(40), "signal 40");

  proto::ProcessInfo a;
  a.pid = 7;
  a.argv = {"sleep", "100"};
  a.cwd = "/tmp";
  a.tag = "web";
  a.running = true;
  proto::ProcessInfo b = a;
  b.pid = 8;
  b.running = false;
  proto::ProcessInfo c;
  c.pid = 9;
  c.argv = {"top"};
  c.cwd = "/";
  c.running = true;
  EXPECT_EQ(
      json::parse(ProcessListJson({a, b, c})),
      json::parse(R"({"processes":[{"pid":7,"tag":"web","config":{"cmd":"sleep",)"
                  R"("args":["100"],"cwd":"/tmp"}},{"pid":9,"config":{"cmd":"top","cwd":"/"}}]})"));
}

TEST(E2bProcessParseTest, HeadersAndErrorCodes) {
  EXPECT_EQ(*ParseTimeoutMs(std::nullopt), 0u);
  EXPECT_EQ(*ParseTimeoutMs("60000"), 60000u);
  EXPECT_FALSE(ParseTimeoutMs("12345678901").ok());
  EXPECT_FALSE(ParseTimeoutMs("1s").ok());
  EXPECT_FALSE(ParseTimeoutMs("").ok());
  EXPECT_EQ(*ParseKeepaliveInterval(std::nullopt), kDefaultKeepalive);
  EXPECT_EQ(*ParseKeepaliveInterval("50"), std::chrono::seconds(50));
  EXPECT_FALSE(ParseKeepaliveInterval("0").ok());
  EXPECT_FALSE(ParseKeepaliveInterval("x").ok());

  Error user = Fail(ErrorCode::kInvalidArgument, "start", "", "resolve user(bob): no such user");
  EXPECT_STREQ(StartErrorCode(user), "unauthenticated");
  Error cwd = Fail(ErrorCode::kNotFound, "start", "", "chdir(/nope): No such file or directory");
  EXPECT_STREQ(StartErrorCode(cwd), "invalid_argument");
  Error prog = Fail(ErrorCode::kNotFound, "start", "", "execve(nope): No such file or directory");
  EXPECT_STREQ(StartErrorCode(prog), "not_found");
}

// --- ServeProcess over a real agent ---------------------------------------------------

constexpr const char* kId = "0123456789abcdef0123456789abcdef";

// Only Connect matters here: each call reaches the test agent.
class FakeLive : public LiveService {
 public:
  explicit FakeLive(std::string sock) : sock_(std::move(sock)) {}
  asio::awaitable<Result<LiveInfo>> Create(LiveCreateRequest) override {
    co_return Fail(ErrorCode::kInternal, "create", "", "not in this test");
  }
  std::vector<LiveInfo> List(const std::map<std::string, std::string>&) const override {
    return {};
  }
  Result<LiveInfo> Inspect(const std::string& id) const override {
    return Fail(ErrorCode::kNotFound, "sandbox", id, "not in this test");
  }
  asio::awaitable<Result<void>> Kill(const std::string&) override { co_return Ok(); }
  Result<LiveInfo> SetTimeout(const std::string& id, uint64_t) override { return Inspect(id); }
  asio::awaitable<Result<void>> Pause(const std::string&) override { co_return Ok(); }
  asio::awaitable<Result<void>> Resume(const std::string&) override { co_return Ok(); }
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) override {
    if (id != kId) co_return Fail(ErrorCode::kNotFound, "sandbox", id, "no such sandbox");
    auto ex = co_await asio::this_coro::executor;
    AgentEndpoint ep{sock_};
    auto conn = co_await pool::AgentConn::Connect(ex, ep);
    co_return conn;
  }
  Result<std::vector<std::string>> Logs(const std::string&, size_t) const override {
    return std::vector<std::string>{};
  }
  Result<std::shared_ptr<void>> FollowLogs(const std::string& id, LineFn) override {
    return Inspect(id).error();
  }

 private:
  std::string sock_;
};

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct Envelope {
  uint8_t flags = 0;
  json msg;
};

// One HTTP connection to the test server, read as it arrives.
class Client {
 public:
  explicit Client(uint16_t port) : s_(io_) {
    s_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    p_.body_limit(boost::none);
  }
  void Send(const std::string& method, const std::string& body, bool stream,
            const std::vector<std::pair<std::string, std::string>>& headers = {},
            std::optional<std::string> type = std::nullopt) {
    http::request<http::string_body> req{http::verb::post, "/process.Process/" + method, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, type     ? *type
                                       : stream ? "application/connect+json"
                                                : "application/json");
    req.set("Connect-Protocol-Version", "1");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = stream ? e2b::Envelope(kEnvelopeMessage, body) : body;
    req.prepare_payload();
    http::write(s_, req);
  }
  unsigned Status() {
    if (!p_.is_header_done()) {
      s_.expires_after(std::chrono::seconds(20));
      http::read_header(s_, buf_, p_);
    }
    return p_.get().result_int();
  }
  std::string Type() {
    Status();
    auto it = p_.get().find(http::field::content_type);
    return it == p_.get().end() ? "" : std::string(it->value());
  }
  // The whole body (a unary answer).
  std::string Body() {
    Status();
    s_.expires_after(std::chrono::seconds(20));
    if (!p_.is_done()) http::read(s_, buf_, p_);
    return p_.get().body();
  }
  // The next envelope of a stream, or nullopt when the body ended first.
  std::optional<Envelope> Next() {
    Status();
    for (;;) {
      const std::string& body = p_.get().body();
      if (body.size() - at_ >= 5) {
        uint32_t n = 0;
        for (int i = 1; i <= 4; ++i) n = (n << 8) | static_cast<uint8_t>(body[at_ + i]);
        if (body.size() - at_ >= 5 + n) {
          Envelope e;
          e.flags = static_cast<uint8_t>(body[at_]);
          e.msg = json::parse(body.substr(at_ + 5, n));
          at_ += 5 + n;
          return e;
        }
      }
      if (p_.is_done()) return std::nullopt;
      boost::system::error_code ec;
      s_.expires_after(std::chrono::seconds(20));
      http::read_some(s_, buf_, p_, ec);
      if (ec) return std::nullopt;
    }
  }
  // Whether the body ends (the last chunk) after what was read.
  bool Ends() {
    while (!p_.is_done()) {
      boost::system::error_code ec;
      s_.expires_after(std::chrono::seconds(20));
      http::read_some(s_, buf_, p_, ec);
      if (ec) return false;
    }
    return p_.get().body().size() == at_;
  }
  void Close() { s_.socket().close(); }

 private:
  asio::io_context io_;
  beast::tcp_stream s_;
  beast::flat_buffer buf_;
  http::response_parser<http::string_body> p_;
  size_t at_ = 0;
};

// What a stream carried, up to its end.
struct Events {
  int64_t pid = 0;
  std::string out, err, pty;
  int keepalives = 0;
  json end;         // the end event
  json end_stream;  // the 0x02 message
  bool first_was_start = false;
};

class E2bProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start());
    live_ = std::make_unique<FakeLive>(agent_.sock());
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    auto accept = [this]() -> asio::awaitable<void> { co_await AcceptLoop(); };
    asio::co_spawn(io_, accept, asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { acceptor_.close(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  asio::awaitable<void> AcceptLoop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      auto session = [this, s = std::move(sock)]() mutable -> asio::awaitable<void> {
        co_await Session(std::move(s));
      };
      asio::co_spawn(io_, std::move(session), asio::detached);
    }
  }

  // The router's part, reduced: read a request, hand it to ServeProcess.
  asio::awaitable<void> Session(tcp::socket sock) {
    beast::tcp_stream s(std::move(sock));
    beast::flat_buffer buf;
    std::string user;
    {
      std::lock_guard<std::mutex> l(mu_);
      user = user_;
    }
    EnvdCall call{*live_, sandbox_, user};
    for (;;) {
      Request req;
      boost::system::error_code ec;
      co_await http::async_read(s, buf, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      std::string target(req.target());
      std::string_view method(target);
      if (!co_await ServeProcess(s, req, method, call)) break;
    }
    s.close();
    {
      std::lock_guard<std::mutex> l(mu_);
      ++sessions_done_;
    }
    cv_.notify_all();
  }
  void SetUser(const std::string& u) {
    std::lock_guard<std::mutex> l(mu_);
    user_ = u;
  }
  int SessionsDone() {
    std::lock_guard<std::mutex> l(mu_);
    return sessions_done_;
  }
  bool WaitSessionsDone(int n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(10), [&] { return sessions_done_ >= n; });
  }

  // A unary call: status and JSON body.
  std::pair<unsigned, json> Unary(const std::string& method, const std::string& body) {
    Client c(port_);
    c.Send(method, body, false);
    unsigned status = c.Status();
    EXPECT_EQ(c.Type(), "application/json");
    return {status, json::parse(c.Body(), nullptr, false)};
  }
  std::unique_ptr<Client> Stream(const std::string& method, const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& h = {}) {
    auto c = std::make_unique<Client>(port_);
    c->Send(method, body, true, h);
    EXPECT_EQ(c->Status(), 200u);
    EXPECT_EQ(c->Type(), "application/connect+json");
    return c;
  }
  // The start event's pid (the first message).
  static int64_t StartPid(Client& c) {
    auto e = c.Next();
    if (!e || e->flags != kEnvelopeMessage || !e->msg["event"].contains("start")) {
      ADD_FAILURE() << "expected a start event, got " << (e ? e->msg.dump() : "nothing");
      return 0;
    }
    return e->msg["event"]["start"]["pid"].get<int64_t>();
  }
  // The events until the end of the stream (start included when not read yet).
  static Events Drain(Client& c, Events ev = {}) {
    bool first = true;
    while (auto e = c.Next()) {
      if (e->flags == kEnvelopeEndStream) {
        ev.end_stream = e->msg;
        break;
      }
      const json& event = e->msg["event"];
      if (event.contains("start")) {
        ev.pid = event["start"]["pid"];
        ev.first_was_start = first;
      }
      if (event.contains("data")) {
        for (const char* k : {"stdout", "stderr", "pty"}) {
          if (!event["data"].contains(k)) continue;
          std::string bytes = *Base64Decode(event["data"][k].get<std::string>(), k);
          (std::string(k) == "stdout"   ? ev.out
           : std::string(k) == "stderr" ? ev.err
                                        : ev.pty) += bytes;
        }
      }
      if (event.contains("keepalive")) ++ev.keepalives;
      if (event.contains("end")) ev.end = event["end"];
      first = false;
    }
    EXPECT_TRUE(c.Ends());
    return ev;
  }
  // Data until `needle` has been seen (in any stream); returns all of it.
  static std::string Until(Client& c, const std::string& needle) {
    std::string all;
    while (all.find(needle) == std::string::npos) {
      auto e = c.Next();
      if (!e || e->flags != kEnvelopeMessage) {
        ADD_FAILURE() << "stream ended before '" << needle << "': " << all;
        return all;
      }
      const json& event = e->msg["event"];
      if (!event.contains("data")) continue;
      for (const auto& [k, v] : event["data"].items()) {
        all += *Base64Decode(v.get<std::string>(), "data");
      }
    }
    return all;
  }
  static std::string B64(const std::string& s) { return Base64Encode(s); }
  static std::string Pid(int64_t pid) {
    return R"({"process":{"pid":)" + std::to_string(pid) + "}}";
  }
  std::pair<unsigned, json> Input(int64_t pid, const std::string& data,
                                  const char* kind = "stdin") {
    return Unary("SendInput", R"({"process":{"pid":)" + std::to_string(pid) + R"(},"input":{")" +
                                  kind + R"(":")" + B64(data) + R"("}})");
  }
  std::pair<unsigned, json> Kill(int64_t pid) {
    return Unary("SendSignal",
                 R"({"process":{"pid":)" + std::to_string(pid) + R"(},"signal":"SIGNAL_SIGKILL"})");
  }

  live_test::TestAgent agent_;
  std::unique_ptr<FakeLive> live_;
  LiveInfo sandbox_ = [] {
    LiveInfo i;
    i.id = kId;
    i.cwd = "/tmp";  // the sandbox's default working dir
    return i;
  }();
  std::string user_;  // root; guarded by mu_
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  int sessions_done_ = 0;
};

TEST_F(E2bProcessTest, StartStreamsStartDataEndThenEndOfStream) {
  auto c = Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c",)"
                           R"("echo hi; echo err >&2; echo $USER $LOGNAME $HOME $FOO; pwd"],)"
                           R"("envs":{"FOO":"bar"}},"stdin":false})");
  Events ev = Drain(*c);
  EXPECT_TRUE(ev.first_was_start);
  EXPECT_GT(ev.pid, 0);
  EXPECT_EQ(ev.out, "hi\nroot root /root bar\n/tmp\n");
  EXPECT_EQ(ev.err, "err\n");
  EXPECT_EQ(ev.end, json::parse(R"({"exited":true,"status":"exit status 0"})"));
  EXPECT_EQ(ev.end_stream, json::object());
}

TEST_F(E2bProcessTest, NonZeroExitAndDeadline) {
  auto c = Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c","exit 3"]},"stdin":false})");
  Events ev = Drain(*c);
  EXPECT_EQ(ev.end, json::parse(R"({"exitCode":3,"exited":true,"status":"exit status 3",)"
                                R"("error":"exit status 3"})"));
  EXPECT_EQ(ev.end_stream, json::object());

  // Connect-Timeout-Ms is the process's lifetime: killed, then deadline_exceeded.
  auto d = Stream("Start", R"({"process":{"cmd":"sleep","args":["30"]},"stdin":false})",
                  {{"Connect-Timeout-Ms", "300"}});
  Events dl = Drain(*d);
  EXPECT_TRUE(dl.first_was_start);
  EXPECT_EQ(dl.end, json::parse(R"({"exitCode":-1,"status":"signal: killed",)"
                                R"("error":"signal: killed"})"));
  EXPECT_EQ(dl.end_stream["error"]["code"], "deadline_exceeded") << dl.end_stream;
}

TEST_F(E2bProcessTest, ConnectSeesNewOutputAndInputKeepsItsOrder) {
  auto first = Stream("Start", R"({"process":{"cmd":"cat"},"stdin":true})");
  const int64_t pid = StartPid(*first);
  ASSERT_GT(pid, 0);
  auto second = Stream("Connect", Pid(pid));
  EXPECT_EQ(StartPid(*second), pid);

  auto in = Input(pid, "one\n");
  EXPECT_EQ(in.first, 200u) << in.second;
  EXPECT_EQ(in.second, json::object());
  EXPECT_EQ(Until(*first, "one\n"), "one\n");
  EXPECT_EQ(Until(*second, "one\n"), "one\n");

  // A large input then CloseStdin at once: every byte arrives before the
  // end of input (SendInput answers only once the agent has taken it).
  std::string big;
  for (int i = 0; i < 300000; ++i) big += static_cast<char>('a' + i % 26);
  big += "\n";
  EXPECT_EQ(Input(pid, big).first, 200u);
  auto close = Unary("CloseStdin", Pid(pid));
  EXPECT_EQ(close.first, 200u) << close.second;

  Events a = Drain(*first);
  Events b = Drain(*second);
  EXPECT_EQ(a.out.size(), big.size());
  EXPECT_TRUE(a.out == big);
  EXPECT_TRUE(b.out == big);
  EXPECT_EQ(a.end, json::parse(R"({"exited":true,"status":"exit status 0"})"));
  EXPECT_EQ(b.end, a.end);
  EXPECT_EQ(b.end_stream, json::object());

  // Gone now: input and Connect say not_found; Connect to an exited but
  // retained process is its start and end at once.
  auto late = Input(pid, "x");
  EXPECT_EQ(late.first, 404u);
  EXPECT_EQ(late.second["code"], "not_found");
  auto again = Stream("Connect", Pid(pid));
  Events ended = Drain(*again);
  EXPECT_TRUE(ended.first_was_start);
  EXPECT_EQ(ended.end, a.end);
}

TEST_F(E2bProcessTest, InputThatEndsTheProcessIsDelivered) {
  // The process ends as soon as it has the bytes: SendInput and CloseStdin
  // still succeed (their frames were taken before the end), every time.
  for (int i = 0; i < 20; ++i) {
    SCOPED_TRACE(i);
    auto c = Stream("Start", R"({"process":{"cmd":"head","args":["-c","3"]},"stdin":true})");
    const int64_t pid = StartPid(*c);
    auto in = Input(pid, "abc");
    EXPECT_EQ(in.first, 200u) << in.second;
    Events ev = Drain(*c);
    EXPECT_EQ(ev.out, "abc");
    EXPECT_EQ(ev.end["status"], "exit status 0");

    auto t = Stream("Start", R"({"process":{"cmd":"cat"},"stdin":true})");
    const int64_t tp = StartPid(*t);
    auto close = Unary("CloseStdin", Pid(tp));
    EXPECT_EQ(close.first, 200u) << close.second;
    EXPECT_EQ(Drain(*t).end["status"], "exit status 0");
  }
}

TEST_F(E2bProcessTest, SignalListAndTags) {
  auto sleeper =
      Stream("Start", R"({"process":{"cmd":"sleep","args":["100"],"cwd":"/"},"stdin":false,)"
                      R"("tag":"web"})");
  const int64_t pid = StartPid(*sleeper);
  auto list = Unary("List", "{}");
  ASSERT_EQ(list.first, 200u);
  bool seen = false;
  for (const auto& p : list.second["processes"]) {
    if (p["pid"] != pid) continue;
    seen = true;
    EXPECT_EQ(p["tag"], "web");
    EXPECT_EQ(p["config"]["cmd"], "sleep");
    EXPECT_EQ(p["config"]["args"], json::array({"100"}));
    EXPECT_EQ(p["config"]["cwd"], "/");
  }
  EXPECT_TRUE(seen) << list.second;

  auto k = Unary("SendSignal", R"({"process":{"tag":"web"},"signal":"SIGNAL_SIGKILL"})");
  EXPECT_EQ(k.first, 200u) << k.second;
  EXPECT_EQ(k.second, json::object());
  Events ev = Drain(*sleeper);
  EXPECT_EQ(ev.end["status"], "signal: killed");
  EXPECT_EQ(ev.end["exitCode"], -1);
  EXPECT_EQ(ev.end_stream, json::object());  // killed, not timed out

  // Exited: not listed, and signalling it is not_found (the SDK's false).
  // (Named: a range-for over a temporary's member reads freed memory.)
  auto after = Unary("List", "");
  for (const auto& p : after.second["processes"]) EXPECT_NE(p["pid"], pid);
  auto gone = Kill(pid);
  EXPECT_EQ(gone.first, 404u);
  EXPECT_EQ(gone.second["code"], "not_found");
}

TEST_F(E2bProcessTest, PtyStartWithSizeInputAndResize) {
  auto c =
      Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c",)"
                      R"("stty size; read x; stty size; echo got $x"],"envs":{"TERM":"xterm"}},)"
                      R"("pty":{"size":{"cols":100,"rows":30}}})");
  const int64_t pid = StartPid(*c);
  std::string seen = Until(*c, "30 100");
  auto up = Unary("Update", R"({"process":{"pid":)" + std::to_string(pid) +
                                R"(},"pty":{"size":{"cols":120,"rows":40}}})");
  EXPECT_EQ(up.first, 200u) << up.second;
  EXPECT_EQ(Input(pid, "hello\n", "pty").first, 200u);
  Events ev = Drain(*c);
  EXPECT_NE(ev.pty.find("40 120"), std::string::npos) << ev.pty;
  EXPECT_NE(ev.pty.find("got hello"), std::string::npos) << ev.pty;
  EXPECT_TRUE(ev.out.empty());
  EXPECT_EQ(ev.end["status"], "exit status 0");

  // Connect knows it is a terminal: its output is pty data.
  auto t = Stream("Start", R"({"process":{"cmd":"/bin/sh","args":["-c","read x; echo got $x"]},)"
                           R"("pty":{}})");
  const int64_t tp = StartPid(*t);
  auto attached = Stream("Connect", Pid(tp));
  EXPECT_EQ(StartPid(*attached), tp);
  EXPECT_EQ(Input(tp, "again\n", "pty").first, 200u);
  Events a = Drain(*attached);
  EXPECT_NE(a.pty.find("got again"), std::string::npos) << a.pty;
  EXPECT_TRUE(a.out.empty());
  Drain(*t);
}

TEST_F(E2bProcessTest, ErrorsAreConnectErrors) {
  // Unknown pid: a stream's error is in its end (HTTP 200), a unary's in
  // its status and body.
  auto c = Stream("Connect", Pid(999999));
  auto e = c->Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->flags, kEnvelopeEndStream);
  EXPECT_EQ(e->msg["error"]["code"], "not_found") << e->msg;
  for (const char* method : {"CloseStdin", "Update"}) {
    auto r = Unary(method, Pid(999999));
    EXPECT_EQ(r.first, 404u) << method;
    EXPECT_EQ(r.second["code"], "not_found") << method;
  }
  EXPECT_EQ(Input(999999, "x").second["code"], "not_found");
  EXPECT_EQ(Kill(999999).second["code"], "not_found");

  struct Case {
    const char* body;
    const char* code;
  };
  for (const Case& k : std::initializer_list<Case>{
           {R"({"process":{"cmd":"no-such-program-x"},"stdin":false})", "not_found"},
           {R"({"process":{"cmd":"true","cwd":"/no/such/dir"},"stdin":false})", "invalid_argument"},
           {R"({"process":{}})", "invalid_argument"},
           {"not json", "invalid_argument"},
       }) {
    SCOPED_TRACE(k.body);
    auto s = Stream("Start", k.body);
    auto end = s->Next();
    ASSERT_TRUE(end);
    EXPECT_EQ(end->flags, kEnvelopeEndStream);
    EXPECT_EQ(end->msg["error"]["code"], k.code) << end->msg;
    EXPECT_FALSE(s->Next());
  }
  SetUser("no-such-user-x");
  auto u = Stream("Start", R"({"process":{"cmd":"true"},"stdin":false})");
  EXPECT_EQ(u->Next()->msg["error"]["code"], "unauthenticated");
  SetUser("");

  Client wrong(port_);
  wrong.Send("Start", "{}", false, {}, "application/json");
  EXPECT_EQ(wrong.Status(), 415u);
  EXPECT_NE(wrong.Body().find("application/connect+json"), std::string::npos);
  Client proto(port_);
  proto.Send("List", "", false, {}, "application/proto");
  EXPECT_EQ(proto.Status(), 415u);
  auto bad = Unary("SendSignal", "{");
  EXPECT_EQ(bad.first, 400u);
  EXPECT_EQ(bad.second["code"], "invalid_argument");
  auto none = Unary("StreamInput", "{}");
  EXPECT_EQ(none.first, 501u);
  EXPECT_EQ(none.second["code"], "unimplemented");
}

TEST_F(E2bProcessTest, KeepalivesWhileIdle) {
  auto c = Stream("Start", R"({"process":{"cmd":"cat"}})", {{"Keepalive-Ping-Interval", "1"}});
  const int64_t pid = StartPid(*c);
  auto e = c->Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->msg, json::parse(R"({"event":{"keepalive":{}}})"));
  EXPECT_EQ(Unary("CloseStdin", Pid(pid)).first, 200u);
  Events ev = Drain(*c);
  EXPECT_EQ(ev.end["status"], "exit status 0");
}

TEST_F(E2bProcessTest, DisconnectDetachesAndLeaksNothing) {
  const size_t fds = OpenFds();
  const int done = SessionsDone();
  auto c = Stream("Start", R"({"process":{"cmd":"cat"},"stdin":true})");
  const int64_t pid = StartPid(*c);
  ASSERT_GT(pid, 0);
  c->Close();
  c.reset();
  // The server notices the hang-up while idle (no keepalive due for 90 s),
  // closes its agent connection, and ends the session.
  ASSERT_TRUE(WaitSessionsDone(done + 1));
  EXPECT_EQ(OpenFds(), fds);

  // The process lives on: listed, and it still echoes to a new listener.
  bool listed = false;
  const json list = Unary("List", "{}").second;
  for (const auto& p : list["processes"]) listed |= p["pid"] == pid;
  EXPECT_TRUE(listed) << list << " pid " << pid;
  auto again = Stream("Connect", Pid(pid));
  EXPECT_EQ(StartPid(*again), pid);
  EXPECT_EQ(Input(pid, "still\n").first, 200u);
  EXPECT_EQ(Until(*again, "still\n"), "still\n");
  EXPECT_EQ(Unary("CloseStdin", Pid(pid)).first, 200u);
  EXPECT_EQ(Drain(*again).end["status"], "exit status 0");
}

}  // namespace
}  // namespace wb::daemon::e2b
