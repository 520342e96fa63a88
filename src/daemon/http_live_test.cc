// The live sandboxes' HTTP routes: the pure parts (routes, queries, bodies,
// status codes), then the real HTTP server over a fake LiveService whose
// Connect reaches a real warmbox-agent spawned as a plain process (no
// namespaces; the file routes need root, as the agent's setfsuid does).
#include "daemon/http_live.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "agent/live_test_util.h"
#include "base/fs.h"
#include "daemon/http_api.h"
#include "daemon/http_server.h"
#include "tests/assert_ok.h"

namespace wb::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

// --- pure parts -------------------------------------------------------------------

TEST(HttpLiveRoutesTest, PathsMapToRoutes) {
  struct Case {
    const char* path;
    LiveRoute route;
    const char* id;
    int64_t pid;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"/v1/sandboxes", LiveRoute::kSandboxes, "", 0},
           {"/v1/sandboxes/", LiveRoute::kSandboxes, "", 0},
           {"/v1/sandboxes/abc", LiveRoute::kSandbox, "abc", 0},
           {"/v1/sandboxes/a%62c", LiveRoute::kSandbox, "abc", 0},
           {"/v1/sandboxes/abc/timeout", LiveRoute::kTimeout, "abc", 0},
           {"/v1/sandboxes/abc/pause", LiveRoute::kPause, "abc", 0},
           {"/v1/sandboxes/abc/resume", LiveRoute::kResume, "abc", 0},
           {"/v1/sandboxes/abc/logs", LiveRoute::kLogs, "abc", 0},
           {"/v1/sandboxes/abc/network", LiveRoute::kNetwork, "abc", 0},
           {"/v1/sandboxes/abc/processes", LiveRoute::kProcesses, "abc", 0},
           {"/v1/sandboxes/abc/processes/12/output", LiveRoute::kOutput, "abc", 12},
           {"/v1/sandboxes/abc/processes/12/signal", LiveRoute::kSignal, "abc", 12},
           {"/v1/sandboxes/abc/processes/12/stdin", LiveRoute::kStdin, "abc", 12},
           {"/v1/sandboxes/abc/processes/12/resize", LiveRoute::kResize, "abc", 12},
           {"/v1/sandboxes/abc/files", LiveRoute::kFiles, "abc", 0},
           {"/v1/sandboxes/abc/fs/stat", LiveRoute::kFsStat, "abc", 0},
           {"/v1/sandboxes/abc/fs/list", LiveRoute::kFsList, "abc", 0},
           {"/v1/sandboxes/abc/fs/mkdir", LiveRoute::kFsMkdir, "abc", 0},
           {"/v1/sandboxes/abc/fs/remove", LiveRoute::kFsRemove, "abc", 0},
           {"/v1/sandboxes/abc/fs/rename", LiveRoute::kFsRename, "abc", 0},
           {"/v1/sandboxes/abc/fs/watch", LiveRoute::kFsWatch, "abc", 0},
       }) {
    SCOPED_TRACE(c.path);
    EXPECT_TRUE(IsLivePath(c.path));
    LiveTarget t = ParseLiveTarget(c.path);
    EXPECT_EQ(t.route, c.route);
    EXPECT_EQ(t.id, c.id);
    EXPECT_EQ(t.pid, c.pid);
  }
  for (const char* bad : {"/v1/sandboxes/abc/nope", "/v1/sandboxes/abc/processes/0/output",
                          "/v1/sandboxes/abc/processes/x/output", "/v1/sandboxes/abc/processes/12",
                          "/v1/sandboxes/abc/processes/12/kill", "/v1/sandboxes/abc/fs/chmod",
                          "/v1/sandboxes/a%2fb", "/v1/sandboxes/%zz", "/v1/sandboxes//pause"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(ParseLiveTarget(bad).route, LiveRoute::kUnknown);
  }
  EXPECT_FALSE(IsLivePath("/v1/sandboxesx"));
  EXPECT_FALSE(IsLivePath("/v1/run"));
  EXPECT_STREQ(LiveRouteMethods(LiveRoute::kSandbox), "GET, DELETE");
  EXPECT_STREQ(LiveRouteMethods(LiveRoute::kFiles), "GET, PUT");
}

TEST(HttpLiveRoutesTest, QueriesArePercentDecoded) {
  auto q = ParseQuery("metadata=a%3D1&metadata=b=2&path=/x+y%2Fz&flag");
  ASSERT_OK(q);
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[0], (std::pair<std::string, std::string>{"metadata", "a=1"}));
  EXPECT_EQ((*q)[1], (std::pair<std::string, std::string>{"metadata", "b=2"}));
  EXPECT_EQ((*q)[2], (std::pair<std::string, std::string>{"path", "/x y/z"}));
  EXPECT_EQ((*q)[3], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_FALSE(ParseQuery("path=%4").ok());
  EXPECT_FALSE(ParseQuery("path=%00").ok());
  auto bad = ParseQuery("path=%zz");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().ToString().find("(path)"), std::string::npos);
}

TEST(HttpLiveRoutesTest, StatusFollowsTheErrorCode) {
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kInvalidArgument), 400u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kPermissionDenied), 403u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kNotFound), 404u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kAlreadyExists), 409u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kFailedPrecondition), 409u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kBusy), 429u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kResourceExhausted), 507u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kDraining), 503u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kUnavailable), 502u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kDeadlineExceeded), 504u);
  EXPECT_EQ(HttpStatusForCode(ErrorCode::kInternal), 500u);
}

TEST(HttpLiveRoutesTest, CreateBodyTakesEveryField) {
  auto r = ParseHttpLiveCreate(
      R"({"image":"busybox","driver":"ns","timeout":60,"env":{"B":"2","A":"1"},)"
      R"("metadata":{"team":"x"},"memory":67108864,"cpus":0.5,"pids":64,"user":"nobody",)"
      R"("cwd":"/tmp","main":["sleep","1"],"on_timeout":"pause"})");
  ASSERT_OK(r);
  EXPECT_EQ(*r->image, "busybox");
  EXPECT_EQ(*r->driver, "ns");
  EXPECT_EQ(*r->timeout_s, 60u);
  EXPECT_EQ(r->env, (std::vector<std::string>{"A=1", "B=2"}));
  EXPECT_EQ(r->metadata.at("team"), "x");
  EXPECT_EQ(*r->memory_bytes, 64u << 20);
  EXPECT_DOUBLE_EQ(*r->cpus, 0.5);
  EXPECT_EQ(*r->pids, 64u);
  EXPECT_EQ(r->user, "nobody");
  EXPECT_EQ(r->cwd, "/tmp");
  EXPECT_EQ(*r->main, (std::vector<std::string>{"sleep", "1"}));
  EXPECT_EQ(r->on_timeout, "pause");

  auto empty = ParseHttpLiveCreate("");
  ASSERT_OK(empty);
  EXPECT_FALSE(empty->image);
  EXPECT_FALSE(empty->main);
  EXPECT_EQ(empty->on_timeout, "kill");
  auto no_main = ParseHttpLiveCreate(R"({"no_main":true,"env":["K=V"]})");
  ASSERT_OK(no_main);
  ASSERT_TRUE(no_main->main);
  EXPECT_TRUE(no_main->main->empty());
  EXPECT_EQ(no_main->env, (std::vector<std::string>{"K=V"}));
}

TEST(HttpLiveRoutesTest, BadBodiesNameTheField) {
  struct Case {
    const char* body;
    const char* want;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"{bad", "bad request(body): not valid JSON"},
           {"[]", "bad request(body): expected a JSON object"},
           {R"({"imagee":"x"})", "bad request(imagee): unknown field"},
           {R"({"timeout":0})", "bad request(timeout)"},
           {R"({"timeout":"1"})", "bad request(timeout)"},
           {R"({"memory":1024})", "bad request(memory)"},
           {R"({"cpus":0})", "bad request(cpus)"},
           {R"({"env":{"A":1}})", "bad request(env)"},
           {R"({"env":["A"]})", "bad request(env)"},
           {R"({"metadata":{"a":1}})", "bad request(metadata)"},
           {R"({"metadata":[]})", "bad request(metadata)"},
           {R"({"main":[]})", "bad request(main)"},
           {R"({"main":["x"],"no_main":true})", "bad request(main)"},
           {R"({"on_timeout":"explode"})", "bad request(on_timeout)"},
           {R"({"driver":"kvm"})", "bad request(driver)"},
       }) {
    SCOPED_TRACE(c.body);
    auto r = ParseHttpLiveCreate(c.body);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().ToString().find(c.want), std::string::npos) << r.error().ToString();
  }
}

TEST(HttpLiveRoutesTest, ExecBodyIsTheSocketsPlusStdinAndBackground) {
  auto r = ParseHttpExec("sb", R"({"cmd":["cat"],"stdin":"hi","background":true,"env":{"K":"V"},)"
                               R"("cwd":"/tmp","user":"1000","timeout_ms":5000})");
  ASSERT_OK(r);
  EXPECT_TRUE(r->background);
  EXPECT_EQ(*r->stdin_data, "hi");
  EXPECT_EQ(r->req.sandbox, "sb");
  EXPECT_EQ(r->req.exec.argv, (std::vector<std::string>{"cat"}));
  EXPECT_TRUE(r->req.exec.stdin);
  EXPECT_EQ(r->req.exec.env, (std::vector<std::string>{"K=V"}));
  EXPECT_EQ(r->req.exec.cwd, "/tmp");
  EXPECT_EQ(r->req.exec.user, "1000");
  EXPECT_EQ(r->req.exec.timeout_ms, 5000u);
  auto j = json::parse(proto::LiveExecJson(r->req));
  EXPECT_TRUE(j["keep"].get<bool>());

  auto b64 = ParseHttpExec("sb", R"({"cmd":["cat"],"stdin_base64":"AP8="})");
  ASSERT_OK(b64);
  EXPECT_EQ(*b64->stdin_data, std::string("\x00\xff", 2));
  auto none = ParseHttpExec("sb", R"({"cmd":["true"]})");
  ASSERT_OK(none);
  EXPECT_FALSE(none->stdin_data);
  EXPECT_FALSE(none->req.exec.stdin);
  auto tty = ParseHttpExec("sb", R"({"cmd":["sh"],"tty":true,"rows":40,"cols":100})");
  ASSERT_OK(tty);
  EXPECT_TRUE(tty->req.exec.tty);
  EXPECT_EQ(tty->req.exec.rows, 40u);

  for (const char* bad :
       {R"({})", R"({"cmd":[]})", R"({"cmd":["x"],"stdin":1})",
        R"({"cmd":["x"],"stdin":"a","stdin_base64":"YQ=="})", R"({"cmd":["x"],"background":"yes"})",
        R"({"cmd":["x"],"op":"ps"})", R"({"cmd":["x"],"tty":true,"rows":70000})"}) {
    SCOPED_TRACE(bad);
    auto e = ParseHttpExec("sb", bad);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(HttpLiveRoutesTest, SmallBodies) {
  EXPECT_EQ(*ParseHttpSignal(R"({"signal":"KILL"})"), 9);
  EXPECT_EQ(*ParseHttpSignal(R"({"signal":2})"), 2);
  EXPECT_EQ(*ParseHttpSignal(""), 15);
  EXPECT_FALSE(ParseHttpSignal(R"({"signal":"NOPE"})").ok());
  EXPECT_EQ(*ParseHttpTimeout(R"({"timeout":30})"), 30u);
  EXPECT_FALSE(ParseHttpTimeout(R"({})").ok());
  auto net = ParseHttpNetwork(R"({"allow_out":["198.51.100.0/24"],"deny_out":["a.test"]})");
  ASSERT_OK(net);
  EXPECT_EQ(net->mode, NetworkMode::kEgress);
  EXPECT_EQ(net->allow_out, std::vector<std::string>{"198.51.100.0/24"});
  auto badnet = ParseHttpNetwork(R"({"allow_out":["exa mple.test"]})");
  ASSERT_FALSE(badnet.ok());
  EXPECT_NE(badnet.error().ToString().find("network.allow_out"), std::string::npos);
  EXPECT_FALSE(ParseHttpNetwork(R"({"ports":["1:2"]})").ok());
  auto withnet = ParseHttpLiveCreate(R"({"network":{"mode":"egress","deny_out":["a.test"]}})");
  ASSERT_OK(withnet);
  EXPECT_EQ(withnet->network.deny_out, std::vector<std::string>{"a.test"});
  EXPECT_FALSE(ParseHttpLiveCreate(R"({"network":{"allow_out":["a.test"]}})").ok());
  auto rs = ParseHttpResize(R"({"rows":10,"cols":20})");
  ASSERT_OK(rs);
  EXPECT_EQ(rs->rows, 10u);
  EXPECT_FALSE(ParseHttpResize(R"({"rows":10})").ok());
  auto mk = ParseHttpFsBody("mkdir", R"({"path":"/a/b","mode":448,"user":"x"})");
  ASSERT_OK(mk);
  EXPECT_EQ(*mk->mode, 0700u);
  EXPECT_EQ(mk->user, "x");
  auto rn = ParseHttpFsBody("rename", R"({"path":"/a","to":"/b"})");
  ASSERT_OK(rn);
  EXPECT_EQ(rn->to, "/b");
  auto rm = ParseHttpFsBody("remove", R"({"path":"/a","recursive":true})");
  ASSERT_OK(rm);
  EXPECT_TRUE(rm->recursive);
  auto rel = ParseHttpFsBody("mkdir", R"({"path":"a"})");
  ASSERT_FALSE(rel.ok());
  EXPECT_NE(rel.error().ToString().find("(path)"), std::string::npos);
  EXPECT_FALSE(ParseHttpFsBody("rename", R"({"path":"/a"})").ok());
}

TEST(HttpLiveRoutesTest, LiveInfoJson) {
  LiveInfo i;
  i.id = "0123456789abcdef0123456789abcdef";
  i.image = "busybox";
  i.driver = "ns";
  i.state = LiveState::kPaused;
  i.metadata = {{"k", "v"}};
  i.main_exit_code = 3;
  auto j = json::parse(ToJson(i));
  EXPECT_EQ(j["id"], i.id);
  EXPECT_EQ(j["state"], "paused");
  EXPECT_EQ(j["metadata"]["k"], "v");
  EXPECT_EQ(j["main_exit_code"], 3);
  EXPECT_FALSE(j.contains("dead_reason"));
}

// --- the server over a real agent -------------------------------------------------

constexpr const char* kId = "0123456789abcdef0123456789abcdef";
constexpr const char* kToken = "live-test-token-0123456789";

class StubRuns : public RunService {
 public:
  asio::awaitable<RunOutcome> Run(proto::RunRequest, RunSink&) override { co_return RunOutcome{}; }
  void CountError(RunErrorKind) override {}
  std::string StatusJson() const override { return R"({"images":[]})"; }
  std::string Metrics() const override { return ""; }
  bool draining() const override { return false; }
};

class FakeLive : public LiveService {
 public:
  explicit FakeLive(std::string sock) : sock_(std::move(sock)) {
    info_.id = kId;
    info_.image = "busybox";
    info_.driver = "ns";
    info_.cwd = "/tmp";
    info_.on_timeout = "kill";
    info_.metadata = {{"team", "a"}};
  }
  asio::awaitable<Result<LiveInfo>> Create(LiveCreateRequest req) override {
    if (req.image && *req.image == "full") {
      co_return Fail(ErrorCode::kBusy, "create", "", "--max-sandboxes reached");
    }
    info_.metadata = req.metadata;
    co_return info_;
  }
  std::vector<LiveInfo> List(const std::map<std::string, std::string>& filter) const override {
    for (const auto& [k, v] : filter) {
      auto it = info_.metadata.find(k);
      if (it == info_.metadata.end() || it->second != v) return {};
    }
    return {info_};
  }
  Result<LiveInfo> Inspect(const std::string& id) const override {
    if (id != kId || killed_) return Fail(ErrorCode::kNotFound, "sandbox", id, "no such sandbox");
    return info_;
  }
  asio::awaitable<Result<void>> Kill(const std::string& id) override {
    auto i = Inspect(id);
    if (!i.ok()) co_return i.error();
    killed_ = true;
    co_return Ok();
  }
  Result<LiveInfo> SetTimeout(const std::string& id, uint64_t seconds) override {
    WB_RETURN_IF_ERROR(Inspect(id));
    info_.expires_ms = static_cast<int64_t>(seconds) * 1000;
    return info_;
  }
  asio::awaitable<Result<void>> Pause(const std::string& id) override {
    co_return co_await SetState(id, LiveState::kPaused);
  }
  asio::awaitable<Result<void>> Resume(const std::string& id) override {
    co_return co_await SetState(id, LiveState::kRunning);
  }
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) override {
    auto i = Inspect(id);
    if (!i.ok()) co_return i.error();
    if (info_.state == LiveState::kPaused) {
      co_return Fail(ErrorCode::kFailedPrecondition, "sandbox", id, "paused");
    }
    // (Named, not temporaries in the co_await: GCC 12 frees those twice.)
    auto ex = co_await asio::this_coro::executor;
    AgentEndpoint ep{sock_};
    auto conn = co_await pool::AgentConn::Connect(ex, ep);
    co_return conn;
  }
  Result<std::vector<std::string>> Logs(const std::string& id, size_t tail) const override {
    WB_RETURN_IF_ERROR(Inspect(id));
    std::vector<std::string> all = {"l1", "l2", "l3"};
    if (tail && tail < all.size()) all.erase(all.begin(), all.end() - static_cast<long>(tail));
    return all;
  }
  Result<std::shared_ptr<void>> FollowLogs(const std::string& id, LineFn on_line) override {
    WB_RETURN_IF_ERROR(Inspect(id));
    follow_ = std::move(on_line);
    return std::shared_ptr<void>(nullptr, [this](void*) { follow_ = nullptr; });
  }
  LineFn follow_;

 private:
  asio::awaitable<Result<void>> SetState(const std::string& id, LiveState s) {
    auto i = Inspect(id);
    if (!i.ok()) co_return i.error();
    if (info_.state == s) {
      co_return Fail(ErrorCode::kFailedPrecondition, "sandbox", id,
                     std::string("already ") + LiveStateName(s));
    }
    info_.state = s;
    co_return Ok();
  }
  std::string sock_;
  LiveInfo info_;
  bool killed_ = false;
};

struct Resp {
  unsigned status = 0;
  std::string body;
  std::string type;
  json Json() const { return json::parse(body, nullptr, false); }
};

class HttpLiveServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start());
    live_ = std::make_unique<FakeLive>(agent_.sock());
    HttpOptions o;
    o.addr = ListenAddress{"127.0.0.1", 0, true};
    o.token = kToken;
    server_ = std::make_unique<HttpServer>(io_, runs_, live_.get(), o);
    ASSERT_OK(server_->Open());
    server_->Start();
    std::string addr = server_->local_address();
    port_ = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
    work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (server_) asio::post(io_, [this] { server_->Close(); });
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // One request on its own connection; the whole response.
  Resp Call(http::verb method, const std::string& target, const std::string& body = "",
            const std::string& type = "application/json") {
    asio::io_context cio;
    beast::tcp_stream s(cio);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, std::string("Bearer ") + kToken);
    if (!body.empty() || method == http::verb::post || method == http::verb::put) {
      req.set(http::field::content_type, type);
      req.body() = body;
      req.prepare_payload();
    }
    http::write(s, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> p;
    p.body_limit(boost::none);
    s.expires_after(std::chrono::seconds(30));
    http::read(s, buf, p);
    Resp r;
    r.status = p.get().result_int();
    r.body = p.get().body();
    auto it = p.get().find(http::field::content_type);
    if (it != p.get().end()) r.type = std::string(it->value());
    return r;
  }
  Resp Get(const std::string& target) { return Call(http::verb::get, target); }
  Resp Post(const std::string& target, const std::string& body = "") {
    return Call(http::verb::post, target, body);
  }
  static std::string Path(const std::string& rest = "") {
    return std::string("/v1/sandboxes/") + kId + rest;
  }

  // The NDJSON lines of a process stream.
  struct Stream {
    std::vector<json> lines;
    std::string out, err;
    json exit;
    int64_t pid = 0;
  };
  static Stream Lines(const std::string& body) {
    Stream st;
    size_t at = 0;
    while (at < body.size()) {
      size_t nl = body.find('\n', at);
      std::string line = body.substr(at, nl - at);
      at = nl == std::string::npos ? body.size() : nl + 1;
      if (line.empty()) continue;
      json j = json::parse(line);
      if (j.contains("started")) st.pid = j["started"]["pid"];
      if (j.contains("stdout")) st.out += *Base64Decode(j["stdout"].get<std::string>(), "x");
      if (j.contains("stderr")) st.err += *Base64Decode(j["stderr"].get<std::string>(), "x");
      if (j.contains("exit")) st.exit = j["exit"];
      st.lines.push_back(std::move(j));
    }
    return st;
  }

  live_test::TestAgent agent_;
  asio::io_context io_;
  StubRuns runs_;
  std::unique_ptr<FakeLive> live_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  uint16_t port_ = 0;
};

TEST_F(HttpLiveServerTest, Lifecycle) {
  auto c = Post("/v1/sandboxes", R"({"image":"busybox","metadata":{"team":"b"}})");
  ASSERT_EQ(c.status, 201u) << c.body;
  EXPECT_EQ(c.Json()["id"], kId);
  EXPECT_EQ(c.Json()["metadata"]["team"], "b");

  auto bad = Post("/v1/sandboxes", R"({"timeout":"soon"})");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(bad.Json()["kind"], "bad_request");
  EXPECT_NE(bad.Json()["error"].get<std::string>().find("timeout"), std::string::npos);
  auto busy = Post("/v1/sandboxes", R"({"image":"full"})");
  EXPECT_EQ(busy.status, 429u);
  EXPECT_EQ(busy.Json()["kind"], "busy");
  auto text = Call(http::verb::post, "/v1/sandboxes", "{}", "text/plain");
  EXPECT_EQ(text.status, 415u);

  auto all = Get("/v1/sandboxes?metadata=team%3Db");
  ASSERT_EQ(all.status, 200u);
  ASSERT_EQ(all.Json()["sandboxes"].size(), 1u);
  EXPECT_EQ(Get("/v1/sandboxes?metadata=team=c").Json()["sandboxes"].size(), 0u);
  EXPECT_EQ(Get("/v1/sandboxes?metadata=x").status, 400u);

  EXPECT_EQ(Get(Path()).Json()["image"], "busybox");
  auto missing = Get("/v1/sandboxes/ffff");
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.Json()["kind"], "not_found");
  EXPECT_EQ(Call(http::verb::put, Path()).status, 405u);
  EXPECT_EQ(Get(Path("/nope")).status, 404u);

  auto t = Post(Path("/timeout"), R"({"timeout":60})");
  ASSERT_EQ(t.status, 200u) << t.body;
  EXPECT_EQ(t.Json()["expires_ms"], 60000);

  EXPECT_EQ(Post(Path("/pause")).status, 204u);
  auto again = Post(Path("/pause"));
  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(again.Json()["kind"], "failed_precondition");
  auto paused = Post(Path("/processes"), R"({"cmd":["true"]})");
  EXPECT_EQ(paused.status, 409u);
  EXPECT_EQ(Post(Path("/resume")).status, 204u);

  auto logs = Get(Path("/logs?tail=2"));
  EXPECT_EQ(logs.status, 200u);
  EXPECT_EQ(logs.body, "l2\nl3\n");

  EXPECT_EQ(Call(http::verb::delete_, Path()).status, 204u);
  EXPECT_EQ(Get(Path()).status, 404u);
}

TEST_F(HttpLiveServerTest, ExecStreamsOutputThenExit) {
  auto r = Post(Path("/processes"), R"({"cmd":["sh","-c","echo out; echo err >&2; pwd; exit 3"]})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.type, "application/x-ndjson");
  auto st = Lines(r.body);
  ASSERT_FALSE(st.lines.empty());
  EXPECT_TRUE(st.lines.front().contains("started"));
  EXPECT_GT(st.pid, 0);
  // The sandbox's default cwd (from Inspect) applies.
  EXPECT_EQ(st.out, "out\n/tmp\n");
  EXPECT_EQ(st.err, "err\n");
  EXPECT_EQ(st.exit["exit_code"], 3);

  auto in = Post(Path("/processes"), R"({"cmd":["cat"],"stdin_base64":"AP9oaQ=="})");
  EXPECT_EQ(Lines(in.body).out, std::string("\x00\xffhi", 4));

  auto nf = Post(Path("/processes"), R"({"cmd":["no-such-program-x"]})");
  EXPECT_GE(nf.status, 400u) << nf.body;
  auto bad = Post(Path("/processes"), R"({"cmd":"ls"})");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_NE(bad.Json()["error"].get<std::string>().find("cmd"), std::string::npos);
}

TEST_F(HttpLiveServerTest, BackgroundAttachStdinSignal) {
  auto bg = Post(Path("/processes"), R"({"cmd":["cat"],"stdin":"first\n","background":true})");
  ASSERT_EQ(bg.status, 201u) << bg.body;
  int64_t pid = bg.Json()["pid"];
  ASSERT_GT(pid, 0);
  auto ps = Get(Path("/processes"));
  ASSERT_EQ(ps.status, 200u);
  bool seen = false;
  const json procs = ps.Json();
  for (const auto& p : procs["processes"]) seen |= p["pid"] == pid;
  EXPECT_TRUE(seen) << ps.body;
  // stdin was closed after "first": cat has exited; its output replays.
  auto out = Get(Path("/processes/" + std::to_string(pid) + "/output?from=0"));
  ASSERT_EQ(out.status, 200u);
  auto st = Lines(out.body);
  EXPECT_EQ(st.out, "first\n");
  EXPECT_EQ(st.exit["exit_code"], 0);

  auto sh = Post(Path("/processes"),
                 R"({"cmd":["sh","-c","read l; echo got $l"],"background":true,"stdin":true})");
  ASSERT_EQ(sh.status, 201u);
  std::string p2 = std::to_string(sh.Json()["pid"].get<int64_t>());
  auto in = Call(http::verb::post, Path("/processes/" + p2 + "/stdin"), "x\n",
                 "application/octet-stream");
  EXPECT_EQ(in.status, 204u) << in.body;
  EXPECT_EQ(Call(http::verb::post, Path("/processes/" + p2 + "/stdin"), "x\n").status, 415u);
  auto o2 = Lines(Get(Path("/processes/" + p2 + "/output?from=0")).body);
  EXPECT_EQ(o2.out, "got x\n");
  EXPECT_EQ(o2.exit["exit_code"], 0);

  auto sleeper = Post(Path("/processes"), R"({"cmd":["sleep","100"],"background":true})");
  ASSERT_EQ(sleeper.status, 201u);
  std::string p3 = std::to_string(sleeper.Json()["pid"].get<int64_t>());
  auto sig = Post(Path("/processes/" + p3 + "/signal"), R"({"signal":"KILL"})");
  EXPECT_EQ(sig.status, 204u) << sig.body;
  EXPECT_EQ(Lines(Get(Path("/processes/" + p3 + "/output")).body).exit["exit_code"], 137);
  auto gone = Post(Path("/processes/999999/signal"), R"({"signal":"TERM"})");
  EXPECT_EQ(gone.status, 404u);
  EXPECT_EQ(gone.Json()["kind"], "not_found");
  EXPECT_EQ(Get(Path("/processes/999999/output")).status, 404u);
  EXPECT_EQ(Post(Path("/processes/" + p3 + "/resize"), R"({"rows":0,"cols":1})").status, 400u);
}

class HttpLiveFilesTest : public HttpLiveServerTest {
 protected:
  void SetUp() override {
    // The agent takes the requesting user's identity (setgroups, setfsuid).
    if (::geteuid() != 0) GTEST_SKIP() << "file operations need root (setfsuid)";
    HttpLiveServerTest::SetUp();
  }
};

TEST_F(HttpLiveFilesTest, WriteReadStatListMkdirRenameRemove) {
  const std::string dir = agent_.dir() + "/files";
  std::string data;
  for (int i = 0; i < 3 * 1024 * 1024 + 7; ++i) data += static_cast<char>(i * 7 + i / 251);
  auto put = Call(http::verb::put, Path("/files?path=" + dir + "/a/b.bin&mode=0600"), data,
                  "application/octet-stream");
  ASSERT_EQ(put.status, 200u) << put.body;
  EXPECT_EQ(put.Json()["size"], data.size());
  EXPECT_EQ(put.Json()["mode"], 0600);
  auto got = Get(Path("/files?path=" + dir + "/a/b.bin"));
  ASSERT_EQ(got.status, 200u);
  EXPECT_EQ(got.type, "application/octet-stream");
  EXPECT_TRUE(got.body == data) << got.body.size();

  auto limit = Call(http::verb::put, Path("/files?path=" + dir + "/c&max_bytes=10"),
                    std::string(100, 'x'), "application/octet-stream");
  EXPECT_EQ(limit.status, 413u);
  EXPECT_EQ(limit.Json()["kind"], "resource_exhausted");

  auto st = Get(Path("/fs/stat?path=" + dir + "/a"));
  ASSERT_EQ(st.status, 200u);
  EXPECT_EQ(st.Json()["type"], "dir");
  auto mk = Post(Path("/fs/mkdir"), json{{"path", dir + "/m/n"}, {"mode", 0700}}.dump());
  ASSERT_EQ(mk.status, 200u) << mk.body;
  EXPECT_EQ(mk.Json()["type"], "dir");
  auto ls = Get(Path("/fs/list?path=" + dir + "&depth=2"));
  ASSERT_EQ(ls.status, 200u);
  std::set<std::string> names;
  const json entries = ls.Json();
  for (const auto& e : entries["entries"]) names.insert(e["path"].get<std::string>());
  EXPECT_TRUE(names.count(dir + "/a/b.bin")) << ls.body;
  EXPECT_TRUE(names.count(dir + "/m/n")) << ls.body;
  auto mv = Post(Path("/fs/rename"), json{{"path", dir + "/a/b.bin"}, {"to", dir + "/z"}}.dump());
  ASSERT_EQ(mv.status, 200u) << mv.body;
  EXPECT_EQ(mv.Json()["path"], dir + "/z");
  EXPECT_EQ(Get(Path("/files?path=" + dir + "/a/b.bin")).status, 404u);
  auto rm = Post(Path("/fs/remove"), json{{"path", dir + "/m"}}.dump());
  EXPECT_EQ(rm.status, 409u) << rm.body;
  EXPECT_EQ(Post(Path("/fs/remove"), json{{"path", dir + "/m"}, {"recursive", true}}.dump()).status,
            204u);
  EXPECT_EQ(Get(Path("/fs/stat?path=" + dir + "/m")).status, 404u);
  auto rel = Get(Path("/fs/stat?path=relative"));
  EXPECT_EQ(rel.status, 400u);
  EXPECT_EQ(Get(Path("/fs/stat")).status, 400u);
}

TEST_F(HttpLiveFilesTest, WatchStreamsEvents) {
  const std::string dir = agent_.dir() + "/w";
  ASSERT_EQ(Post(Path("/fs/mkdir"), json{{"path", dir}}.dump()).status, 200u);
  asio::io_context cio;
  beast::tcp_stream s(cio);
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
  http::request<http::empty_body> req{http::verb::get, Path("/fs/watch?path=" + dir), 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::authorization, std::string("Bearer ") + kToken);
  http::write(s, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  s.expires_after(std::chrono::seconds(20));
  http::read_header(s, buf, p);
  ASSERT_EQ(p.get().result_int(), 200u);
  // The watch is set up before the head is sent: a file made now is seen.
  ASSERT_EQ(Call(http::verb::put, Path("/files?path=" + dir + "/new.txt"), "hi",
                 "application/octet-stream")
                .status,
            200u);
  while (p.get().body().find("new.txt") == std::string::npos) {
    boost::system::error_code ec;
    http::read_some(s, buf, p, ec);
    ASSERT_FALSE(ec) << ec.message() << " " << p.get().body();
  }
  auto line = p.get().body().substr(0, p.get().body().find('\n'));
  auto j = json::parse(line);
  EXPECT_EQ(j["path"], dir + "/new.txt");
  EXPECT_EQ(j["type"], "create");
}

}  // namespace
}  // namespace wb::daemon
