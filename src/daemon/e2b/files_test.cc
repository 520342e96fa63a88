// envd's files over a real socket: ServeFilesystem, ServeEnvdHttp and
// UploadFiles behind a minimal router (the daemon's is http_server.cc), a
// fake LiveService whose Connect reaches a real warmbox-agent spawned as a
// plain process. Files are made as the test's own user (the agent takes no
// other identity), so no root is needed but for the other-user test.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

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
#include <filesystem>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "agent/live_test_util.h"
#include "base/fs.h"
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/filesystem_internal.h"
#include "daemon/e2b/gzip_test_util.h"
#include "daemon/http_api.h"
#include "tests/assert_ok.h"

namespace wb::daemon::e2b {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using nlohmann::json;
using tcp = asio::ip::tcp;

constexpr const char* kId = "0123456789abcdef0123456789abcdef";

class FakeLive : public LiveService {
 public:
  explicit FakeLive(std::string sock) : sock_(std::move(sock)) {
    info_.id = kId;
    info_.env = {"A=1", "PATH=/usr/bin", "A=2"};
  }
  asio::awaitable<Result<LiveInfo>> Create(LiveCreateRequest) override { co_return info_; }
  std::vector<LiveInfo> List(const std::map<std::string, std::string>&) const override {
    return {info_};
  }
  Result<LiveInfo> Inspect(const std::string& id) const override {
    if (id != kId || dead_) return Fail(ErrorCode::kNotFound, "sandbox", id, "no such sandbox");
    return info_;
  }
  asio::awaitable<Result<void>> Kill(const std::string&) override { co_return Ok(); }
  Result<LiveInfo> SetTimeout(const std::string&, uint64_t) override { return info_; }
  asio::awaitable<Result<void>> Pause(const std::string&) override { co_return Ok(); }
  asio::awaitable<Result<void>> Resume(const std::string&) override { co_return Ok(); }
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) override {
    auto i = Inspect(id);
    if (!i.ok()) co_return i.error();
    ++connects_;
    auto ex = co_await asio::this_coro::executor;
    AgentEndpoint ep{sock_};
    auto conn = co_await pool::AgentConn::Connect(ex, ep);
    co_return conn;
  }
  Result<std::vector<std::string>> Logs(const std::string&, size_t) const override {
    return std::vector<std::string>();
  }
  Result<std::shared_ptr<void>> FollowLogs(const std::string&, LineFn) override {
    return std::shared_ptr<void>();
  }
  LiveInfo info_;
  bool dead_ = false;
  int connects_ = 0;

 private:
  std::string sock_;
};

// The user files are made as: the test's own (uid:gid), root's "" as root.
std::string OwnUser() {
  if (::geteuid() == 0) return "";
  return std::to_string(::geteuid()) + ":" + std::to_string(::getegid());
}

// What the daemon's router does for an envd request, in brief.
asio::awaitable<void> Session(tcp::socket sock, FakeLive* live) {
  beast::tcp_stream s(std::move(sock));
  beast::flat_buffer buf;
  for (;;) {
    Parser parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(boost::none);
    error_code ec;
    co_await http::async_read_header(s, buf, parser, redirect_error(use_awaitable, ec));
    if (ec) co_return;
    auto info = live->Inspect(kId);
    if (!info.ok()) co_return;
    std::optional<std::string_view> auth;
    auto a = parser.get().find(http::field::authorization);
    if (a != parser.get().end()) auth = std::string_view(a->value().data(), a->value().size());
    auto user = BasicAuthUser(auth);
    if (!user.ok()) co_return;
    EnvdCall call{*live, *info, user->value_or(OwnUser())};
    bool keep = false;
    if (IsEnvdUpload(parser.get())) {
      const std::chrono::milliseconds timeout(10000);
      keep = co_await UploadFiles(s, buf, parser, call, timeout);
    } else {
      co_await http::async_read(s, buf, parser, redirect_error(use_awaitable, ec));
      if (ec) co_return;
      Request req = parser.release();
      std::string target(req.target());
      std::string path = target.substr(0, target.find('?'));
      const std::string prefix = "/filesystem.Filesystem/";
      if (path.rfind(prefix, 0) == 0) {
        const std::string method = path.substr(prefix.size());
        keep = co_await ServeFilesystem(s, req, method, call);
      } else {
        keep = co_await ServeEnvdHttp(s, req, path, call);
      }
    }
    if (!keep) co_return;
  }
}

asio::awaitable<void> Accept(tcp::acceptor& acc, FakeLive* live) {
  for (;;) {
    error_code ec;
    tcp::socket sock = co_await acc.async_accept(redirect_error(use_awaitable, ec));
    if (ec) co_return;
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, Session(std::move(sock), live), asio::detached);
  }
}

struct Resp {
  unsigned status = 0;
  std::string body;
  std::string type;
  json Json() const { return json::parse(body, nullptr, false); }
};

std::string Gzip(const std::string& data) { return GzipForTest(data); }

struct FilePart {
  std::string filename;
  std::string data;
  std::string name = "file";
};
std::string Multipart(const std::string& boundary, const std::vector<FilePart>& parts) {
  std::string body;
  for (const auto& p : parts) {
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + p.name + "\"";
    if (!p.filename.empty()) body += "; filename=\"" + p.filename + "\"";
    body += "\r\nContent-Type: application/octet-stream\r\n\r\n" + p.data + "\r\n";
  }
  return body + "--" + boundary + "--\r\n";
}

class EnvdFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start());
    live_ = std::make_unique<FakeLive>(agent_.sock());
    acc_ =
        std::make_unique<tcp::acceptor>(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port_ = acc_->local_endpoint().port();
    asio::co_spawn(io_, Accept(*acc_, live_.get()), asio::detached);
    work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
    dir_ = agent_.dir() + "/files";
  }
  void TearDown() override {
    if (acc_) asio::post(io_, [this] { acc_->close(); });
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // One request on its own connection; the whole response.
  Resp Call(http::verb method, const std::string& target, const std::string& body,
            const std::string& type,
            const std::vector<std::pair<std::string, std::string>>& hdrs = {},
            bool chunked = false) {
    asio::io_context cio;
    beast::tcp_stream s(cio);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!type.empty()) req.set(http::field::content_type, type);
    for (const auto& [k, v] : hdrs) req.set(k, v);
    req.body() = body;
    if (chunked) {
      req.chunked(true);
    } else {
      req.prepare_payload();
    }
    http::write(s, req);
    beast::flat_buffer buf;
    s.expires_after(std::chrono::seconds(60));
    error_code ec;
    Resp r;
    for (;;) {
      http::response_parser<http::string_body> p;
      p.body_limit(boost::none);
      http::read(s, buf, p, ec);
      if (ec && !p.is_header_done()) return r;
      if (p.get().result_int() == 100) {  // Expect: 100-continue's interim answer
        ++continues_;
        continue;
      }
      r.status = p.get().result_int();
      r.body = p.get().body();
      auto it = p.get().find(http::field::content_type);
      if (it != p.get().end()) r.type = std::string(it->value());
      return r;
    }
  }
  Resp Rpc(const std::string& method, const json& body, const std::string& user = "") {
    std::vector<std::pair<std::string, std::string>> h;
    if (!user.empty()) h.emplace_back("Authorization", "Basic " + Base64Encode(user + ":"));
    return Call(http::verb::post, "/filesystem.Filesystem/" + method, body.dump(),
                "application/json", h);
  }
  Resp Download(const std::string& path) {
    return Call(http::verb::get, "/files?path=" + path, "", "");
  }
  Resp UploadRaw(const std::string& path, const std::string& data, bool gzip = false) {
    std::vector<std::pair<std::string, std::string>> h;
    if (gzip) h.emplace_back("Content-Encoding", "gzip");
    return Call(http::verb::post, "/files?path=" + path, gzip ? Gzip(data) : data,
                "application/octet-stream", h);
  }
  Resp UploadMultipart(const std::string& query, const std::vector<FilePart>& parts,
                       bool gzip = false) {
    std::vector<std::pair<std::string, std::string>> h = {{"Expect", "100-continue"}};
    if (gzip) h.emplace_back("Content-Encoding", "gzip");
    std::string body = Multipart("----formdata-undici-042", parts);
    return Call(http::verb::post, "/files" + query, gzip ? Gzip(body) : body,
                "multipart/form-data; boundary=----formdata-undici-042", h, /*chunked=*/true);
  }

  live_test::TestAgent agent_;
  asio::io_context io_;
  std::unique_ptr<FakeLive> live_;
  std::unique_ptr<tcp::acceptor> acc_;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::string dir_;
  int continues_ = 0;

  // The daemon's watcher count, read on its loop.
  size_t WatcherCount() {
    std::promise<size_t> n;
    asio::post(io_, [&] { n.set_value(LiveWatcherCount()); });
    return n.get_future().get();
  }
};

TEST_F(EnvdFilesTest, UnaryCallsAndTheirErrors) {
  auto mk = Rpc("MakeDir", {{"path", dir_ + "/a/b"}});
  ASSERT_EQ(mk.status, 200u) << mk.body;
  EXPECT_EQ(mk.type, "application/json");
  EXPECT_EQ(mk.Json()["entry"]["type"], "FILE_TYPE_DIRECTORY");
  auto again = Rpc("MakeDir", {{"path", dir_ + "/a/b"}});
  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(again.Json()["code"], "already_exists");
  ASSERT_EQ(UploadRaw(dir_ + "/a/b/f.txt", "hello").status, 200u);
  ASSERT_EQ(UploadRaw(dir_ + "/a/top.txt", "x").status, 200u);
  auto onfile = Rpc("MakeDir", {{"path", dir_ + "/a/top.txt"}});
  EXPECT_EQ(onfile.Json()["code"], "invalid_argument") << onfile.body;

  auto st = Rpc("Stat", {{"path", dir_ + "/a/b/f.txt"}});
  ASSERT_EQ(st.status, 200u) << st.body;
  const json e = st.Json()["entry"];
  EXPECT_EQ(e["name"], "f.txt");
  EXPECT_EQ(e["path"], dir_ + "/a/b/f.txt");
  EXPECT_EQ(e["type"], "FILE_TYPE_FILE");
  EXPECT_EQ(e["size"], "5");
  EXPECT_EQ(e["mode"], 0644);
  EXPECT_EQ(e["permissions"], "-rw-r--r--");
  EXPECT_TRUE(e["modifiedTime"].get<std::string>().ends_with("Z"));
  auto missing = Rpc("Stat", {{"path", dir_ + "/nope"}});
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.Json()["code"], "not_found");

  // ListDir: depth 1 (the default), then 2.
  auto l1 = Rpc("ListDir", {{"path", dir_ + "/a"}});
  ASSERT_EQ(l1.status, 200u) << l1.body;
  std::set<std::string> one, two;
  const json j1 = l1.Json(), j2 = Rpc("ListDir", {{"path", dir_ + "/a"}, {"depth", 2}}).Json();
  for (const auto& x : j1["entries"]) one.insert(x["path"].get<std::string>());
  EXPECT_EQ(one, (std::set<std::string>{dir_ + "/a/b", dir_ + "/a/top.txt"}));
  for (const auto& x : j2["entries"]) two.insert(x["path"].get<std::string>());
  EXPECT_EQ(two, (std::set<std::string>{dir_ + "/a/b", dir_ + "/a/b/f.txt", dir_ + "/a/top.txt"}));
  EXPECT_EQ(Rpc("ListDir", {{"path", dir_ + "/a"}, {"depth", 65}}).Json()["code"],
            "invalid_argument");
  EXPECT_EQ(Rpc("ListDir", {{"path", dir_ + "/a/top.txt"}}).Json()["code"], "invalid_argument");
  EXPECT_EQ(Rpc("ListDir", {{"path", dir_ + "/none"}}).Json()["code"], "not_found");

  // Move: the destination's parents are made.
  auto mv = Rpc("Move", {{"source", dir_ + "/a/top.txt"}, {"destination", dir_ + "/n/e/w.txt"}});
  ASSERT_EQ(mv.status, 200u) << mv.body;
  EXPECT_EQ(mv.Json()["entry"]["path"], dir_ + "/n/e/w.txt");
  EXPECT_EQ(mv.Json()["entry"]["name"], "w.txt");
  auto mv404 = Rpc("Move", {{"source", dir_ + "/gone"}, {"destination", dir_ + "/x"}});
  EXPECT_EQ(mv404.Json()["code"], "not_found");

  // Remove: recursive, and a missing path is fine (os.RemoveAll).
  auto rm = Rpc("Remove", {{"path", dir_ + "/a"}});
  ASSERT_EQ(rm.status, 200u) << rm.body;
  EXPECT_EQ(rm.body, "{}");
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/a"}}).status, 404u);
  EXPECT_EQ(Rpc("Remove", {{"path", dir_ + "/a"}}).status, 200u);

  // Bad requests.
  auto bad = Call(http::verb::post, "/filesystem.Filesystem/Stat", "{nope", "application/json");
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(bad.Json()["code"], "invalid_argument");
  auto typed = Call(http::verb::post, "/filesystem.Filesystem/Stat", "{}", "text/plain");
  EXPECT_EQ(typed.Json()["code"], "invalid_argument");
  auto unknown = Rpc("Chmod", {{"path", "/"}});
  EXPECT_EQ(unknown.status, 501u);
  EXPECT_EQ(unknown.Json()["code"], "unimplemented");
  auto nouser = Rpc("Stat", {{"path", "/"}}, "no-such-user-xyz");
  EXPECT_EQ(nouser.Json()["code"], "unauthenticated") << nouser.body;
}

// The WatchDir stream's messages, as envelopes.
struct WatchClient {
  asio::io_context cio;
  beast::tcp_stream s{cio};
  beast::flat_buffer buf;
  http::response_parser<http::string_body> p;
  size_t used = 0;
  std::vector<std::pair<uint8_t, json>> msgs;

  WatchClient(uint16_t port, const json& body,
              const std::vector<std::pair<std::string, std::string>>& hdrs) {
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req{http::verb::post, "/filesystem.Filesystem/WatchDir", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::content_type, "application/connect+json");
    for (const auto& [k, v] : hdrs) req.set(k, v);
    req.body() = Envelope(kEnvelopeMessage, body.dump());
    req.prepare_payload();
    http::write(s, req);
    p.body_limit(boost::none);
    s.expires_after(std::chrono::seconds(30));
  }
  // Reads until a message satisfying pred arrives (true) or the stream ends.
  bool Until(const std::function<bool(uint8_t, const json&)>& pred) {
    for (;;) {
      const std::string& b = p.get().body();
      while (b.size() - used >= 5) {
        uint32_t n = 0;
        for (int i = 1; i <= 4; ++i) n = (n << 8) | static_cast<uint8_t>(b[used + i]);
        if (b.size() - used - 5 < n) break;
        uint8_t flags = static_cast<uint8_t>(b[used]);
        json j = json::parse(b.substr(used + 5, n));
        used += 5 + n;
        msgs.emplace_back(flags, j);
        if (pred(flags, j)) return true;
      }
      if (p.is_done()) return false;
      error_code ec;
      http::read_some(s, buf, p, ec);
      if (ec) return false;
    }
  }
};

TEST_F(EnvdFilesTest, WatchDirStreamsEvents) {
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/w"}}).status, 200u);
  WatchClient w(port_, {{"path", dir_ + "/w"}, {"includeEntry", true}},
                {{"Keepalive-Ping-Interval", "1"}});
  ASSERT_TRUE(w.Until([](uint8_t, const json&) { return true; }));
  EXPECT_EQ(w.p.get().result_int(), 200u);
  EXPECT_EQ(w.msgs[0].second, json::parse(R"({"start":{}})"));
  // The watch is set up before start is sent: these are all seen.
  ASSERT_EQ(UploadRaw(dir_ + "/w/new.txt", "hi").status, 200u);
  ASSERT_EQ(Rpc("Remove", {{"path", dir_ + "/w/new.txt"}}).status, 200u);
  std::vector<std::string> seen;
  ASSERT_TRUE(w.Until([&](uint8_t, const json& j) {
    if (j.contains("filesystem")) {
      seen.push_back(j["filesystem"]["type"].get<std::string>());
      EXPECT_EQ(j["filesystem"]["name"], "new.txt");
      if (j["filesystem"]["type"] == "EVENT_TYPE_CREATE" && j["filesystem"].contains("entry")) {
        EXPECT_EQ(j["filesystem"]["entry"]["name"], "new.txt");
      }
    }
    return j.contains("filesystem") && j["filesystem"]["type"] == "EVENT_TYPE_REMOVE";
  }));
  EXPECT_EQ(seen.front(), "EVENT_TYPE_CREATE");
  EXPECT_NE(std::find(seen.begin(), seen.end(), "EVENT_TYPE_WRITE"), seen.end());
  // Idle: keepalives at the requested interval.
  ASSERT_TRUE(w.Until([](uint8_t, const json& j) { return j.contains("keepalive"); }));
}

TEST_F(EnvdFilesTest, WatchDirEndsAtItsDeadlineAndRefusesFiles) {
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/d"}}).status, 200u);
  WatchClient w(port_, {{"path", dir_ + "/d"}}, {{"Connect-Timeout-Ms", "300"}});
  ASSERT_TRUE(w.Until([](uint8_t flags, const json&) { return flags == kEnvelopeEndStream; }));
  EXPECT_EQ(w.msgs.front().second, json::parse(R"({"start":{}})"));
  EXPECT_EQ(w.msgs.back().second["error"]["code"], "deadline_exceeded");
  EXPECT_FALSE(w.Until([](uint8_t, const json&) { return true; }));
  EXPECT_TRUE(w.p.is_done());

  ASSERT_EQ(UploadRaw(dir_ + "/file", "x").status, 200u);
  WatchClient f(port_, {{"path", dir_ + "/file"}}, {});
  ASSERT_TRUE(f.Until([](uint8_t flags, const json&) { return flags == kEnvelopeEndStream; }));
  EXPECT_EQ(f.p.get().result_int(), 200u);
  EXPECT_EQ(f.msgs.back().second["error"]["code"], "invalid_argument");
  WatchClient n(port_, {{"path", dir_ + "/none"}}, {});
  ASSERT_TRUE(n.Until([](uint8_t flags, const json&) { return flags == kEnvelopeEndStream; }));
  EXPECT_EQ(n.msgs.back().second["error"]["code"], "not_found");
}

// The agent's open fds (its listening socket, connections, inotify): number
// to what it refers to ("socket:[INODE]", "anon_inode:inotify").
std::map<std::string, std::string> AgentFds(pid_t pid) {
  std::map<std::string, std::string> fds;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code link_ec;
    auto target = std::filesystem::read_symlink(it->path(), link_ec);
    if (!link_ec) fds[it->path().filename().string()] = target.string();
  }
  return fds;
}

// Those of now that were not in before (by number and target).
std::map<std::string, std::string> Opened(const std::map<std::string, std::string>& before,
                                          const std::map<std::string, std::string>& now) {
  std::map<std::string, std::string> out;
  for (const auto& [fd, target] : now) {
    auto it = before.find(fd);
    if (it == before.end() || it->second != target) out[fd] = target;
  }
  return out;
}

TEST_F(EnvdFilesTest, ClientGoneEndsTheAgentWatch) {
  ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  const auto before = AgentFds(agent_.pid());
  ASSERT_FALSE(before.empty());
  std::map<std::string, std::string> watch_fds;
  {
    WatchClient w(port_, {{"path", dir_}}, {});
    ASSERT_TRUE(w.Until([](uint8_t, const json& j) { return j.contains("start"); }));
    // The watch's connection and its inotify. Compared by identity, not by
    // count: an earlier request's connection may close meanwhile.
    watch_fds = Opened(before, AgentFds(agent_.pid()));
    bool has_inotify = false;
    for (const auto& [fd, target] : watch_fds) has_inotify |= target == "anon_inode:inotify";
    EXPECT_TRUE(has_inotify);
  }  // the client goes
  auto still_open = [&] {
    const auto now = AgentFds(agent_.pid());
    size_t n = 0;
    for (const auto& [fd, target] : watch_fds) {
      auto it = now.find(fd);
      n += it != now.end() && it->second == target;
    }
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (still_open() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(still_open(), 0u);
}

TEST_F(EnvdFilesTest, WatcherTrio) {
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/t"}}).status, 200u);
  auto cw = Rpc("CreateWatcher", {{"path", dir_ + "/t"}, {"recursive", true}});
  ASSERT_EQ(cw.status, 200u) << cw.body;
  std::string id = cw.Json()["watcherId"];
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(WatcherCount(), 1u);
  ASSERT_EQ(UploadRaw(dir_ + "/t/a.txt", "1").status, 200u);
  // Events arrive asynchronously: poll (bounded) until the create is there.
  std::vector<json> events;
  for (int i = 0; i < 2000 && events.empty(); ++i) {
    auto ev = Rpc("GetWatcherEvents", {{"watcherId", id}});
    ASSERT_EQ(ev.status, 200u) << ev.body;
    const json got = ev.Json();
    for (const auto& e : got["events"]) events.push_back(e);
    if (events.empty()) std::this_thread::yield();
  }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["name"], "a.txt");
  EXPECT_EQ(events[0]["type"], "EVENT_TYPE_CREATE");
  EXPECT_EQ(Rpc("RemoveWatcher", {{"watcherId", id}}).status, 200u);
  auto gone = Rpc("GetWatcherEvents", {{"watcherId", id}});
  EXPECT_EQ(gone.status, 404u);
  EXPECT_EQ(gone.Json()["code"], "not_found");
  EXPECT_EQ(Rpc("RemoveWatcher", {{"watcherId", id}}).status, 404u);
  EXPECT_EQ(Rpc("CreateWatcher", {{"path", dir_ + "/none"}}).Json()["code"], "not_found");
  // The removed watcher's coroutine ends (its agent watch is closed).
  for (int i = 0; i < 1000 && WatcherCount() != 0; ++i) std::this_thread::yield();
  EXPECT_EQ(WatcherCount(), 0u);
}

TEST_F(EnvdFilesTest, WatchersDieWithTheirSandbox) {
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/k"}}).status, 200u);
  auto cw = Rpc("CreateWatcher", {{"path", dir_ + "/k"}});
  ASSERT_EQ(cw.status, 200u) << cw.body;
  std::string id = cw.Json()["watcherId"];
  ::kill(agent_.pid(), SIGKILL);  // the sandbox dies
  Resp ev;
  for (int i = 0; i < 2000; ++i) {
    ev = Rpc("GetWatcherEvents", {{"watcherId", id}});
    if (ev.status != 200u) break;
  }
  EXPECT_EQ(ev.Json()["code"], "unavailable") << ev.body;
  EXPECT_NE(ev.Json()["message"].get<std::string>().find("ended"), std::string::npos);
}

TEST_F(EnvdFilesTest, UploadsInEveryForm) {
  // multipart, one file, ?path= given (files.write).
  auto one = UploadMultipart("?path=" + dir_ + "/m/one.txt", {{"ignored", "first"}});
  ASSERT_EQ(one.status, 200u) << one.body;
  EXPECT_EQ(one.Json(), json::parse(R"([{"name":"one.txt","type":"file","path":")" + dir_ +
                                    R"(/m/one.txt"}])"));
  EXPECT_EQ(Download(dir_ + "/m/one.txt").body, "first");
  EXPECT_EQ(continues_, 1);  // Expect: 100-continue was answered
  // multipart, several files, paths from the filenames (files.writeFiles);
  // a part not named "file" is skipped; an existing file is overwritten.
  auto multi = UploadMultipart("", {{dir_ + "/m/one.txt", "again"},
                                    {"", "form field", "note"},
                                    {dir_ + "/m/sub/two.bin", std::string("\0\r\n--x", 6)}});
  ASSERT_EQ(multi.status, 200u) << multi.body;
  ASSERT_EQ(multi.Json().size(), 2u);
  EXPECT_EQ(multi.Json()[1]["path"], dir_ + "/m/sub/two.bin");
  EXPECT_EQ(Download(dir_ + "/m/one.txt").body, "again");
  EXPECT_EQ(Download(dir_ + "/m/sub/two.bin").body, std::string("\0\r\n--x", 6));
  // octet-stream, plain and gzip; multipart gzip.
  auto raw = UploadRaw(dir_ + "/r/raw", "raw bytes");
  ASSERT_EQ(raw.status, 200u) << raw.body;
  EXPECT_EQ(raw.Json()[0]["name"], "raw");
  EXPECT_EQ(Download(dir_ + "/r/raw").body, "raw bytes");
  std::string text(300000, 'z');
  ASSERT_EQ(UploadRaw(dir_ + "/r/gz", text, true).status, 200u);
  EXPECT_TRUE(Download(dir_ + "/r/gz").body == text);
  auto mgz = UploadMultipart("", {{dir_ + "/r/mgz", "zipped part"}}, true);
  ASSERT_EQ(mgz.status, 200u) << mgz.body;
  EXPECT_EQ(Download(dir_ + "/r/mgz").body, "zipped part");
  // An empty file.
  ASSERT_EQ(UploadRaw(dir_ + "/r/empty", "").status, 200u);
  auto empty = Download(dir_ + "/r/empty");
  EXPECT_EQ(empty.status, 200u);
  EXPECT_EQ(empty.body, "");
  EXPECT_EQ(empty.type, "application/octet-stream");
}

TEST_F(EnvdFilesTest, TwentyMiBRoundTripIsByteExact) {
  std::string data(20u << 20, '\0');
  uint64_t x = 88172645463325252ull;
  for (auto& c : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  auto up = UploadMultipart("?path=" + dir_ + "/big.bin", {{"big.bin", data}});
  ASSERT_EQ(up.status, 200u) << up.body;
  auto down = Download(dir_ + "/big.bin");
  ASSERT_EQ(down.status, 200u);
  ASSERT_EQ(down.body.size(), data.size());
  EXPECT_TRUE(down.body == data);
  auto st = Rpc("Stat", {{"path", dir_ + "/big.bin"}});
  EXPECT_EQ(st.Json()["entry"]["size"], std::to_string(data.size()));
}

TEST_F(EnvdFilesTest, BadUploadsAreRefusedAndLeaveNothing) {
  // A body without a closing boundary: 400 naming it; the file is not left.
  std::string cut = Multipart("b", {{dir_ + "/u/cut.txt", "data"}});
  cut.resize(cut.size() - 8);
  auto r = Call(http::verb::post, "/files", cut, "multipart/form-data; boundary=b");
  EXPECT_EQ(r.status, 400u) << r.body;
  EXPECT_EQ(r.Json()["code"], 400);
  EXPECT_NE(r.Json()["message"].get<std::string>().find("closing boundary"), std::string::npos)
      << r.body;
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/u/cut.txt"}}).status, 404u);
  // Of two files, the second bad: neither is left.
  std::string two = Multipart("b", {{dir_ + "/u/1", "one"}});
  two = two.substr(0, two.size() - 4) + "\r\nno colon\r\n\r\nx\r\n--b--";
  auto r2 = Call(http::verb::post, "/files", two, "multipart/form-data; boundary=b");
  EXPECT_EQ(r2.status, 400u) << r2.body;
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/u/1"}}).status, 404u);
  // No boundary, no path, an unknown encoding, junk gzip, a directory.
  auto nob = Call(http::verb::post, "/files", "x", "multipart/form-data");
  EXPECT_EQ(nob.status, 400u);
  EXPECT_NE(nob.Json()["message"].get<std::string>().find("boundary"), std::string::npos);
  auto nopath = Call(http::verb::post, "/files", "x", "application/octet-stream");
  EXPECT_EQ(nopath.status, 400u);
  EXPECT_NE(nopath.Json()["message"].get<std::string>().find("path"), std::string::npos);
  auto nameless = UploadMultipart("", {{"", "no filename"}});
  EXPECT_EQ(nameless.status, 400u);
  EXPECT_NE(nameless.Json()["message"].get<std::string>().find("no filename"), std::string::npos);
  auto nofile = UploadMultipart("", {{"x", "y", "notfile"}});
  EXPECT_EQ(nofile.status, 400u);
  auto dup = UploadMultipart("?path=" + dir_ + "/u/same", {{"", "a"}, {"", "b"}});
  EXPECT_EQ(dup.status, 400u);
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/u/same"}}).status, 404u);
  auto br = Call(http::verb::post, "/files?path=" + dir_ + "/u/br", "x", "application/octet-stream",
                 {{"Content-Encoding", "br"}});
  EXPECT_EQ(br.status, 400u);
  auto junk = Call(http::verb::post, "/files?path=" + dir_ + "/u/junk", "not gzip",
                   "application/octet-stream", {{"Content-Encoding", "gzip"}});
  EXPECT_EQ(junk.status, 400u);
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/u/junk"}}).status, 404u);
  auto text = Call(http::verb::post, "/files", "x", "text/plain");
  EXPECT_EQ(text.status, 400u);
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/u/dir"}}).status, 200u);
  auto isdir = UploadRaw(dir_ + "/u/dir", "x");
  EXPECT_EQ(isdir.status, 400u) << isdir.body;
}

TEST_F(EnvdFilesTest, DownloadsEnvsAndTheirErrors) {
  auto nf = Download(dir_ + "/missing");
  EXPECT_EQ(nf.status, 404u);
  EXPECT_EQ(nf.type, "application/json");
  EXPECT_EQ(nf.Json()["code"], 404);
  EXPECT_EQ(Call(http::verb::get, "/files", "", "").status, 400u);
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/dd"}}).status, 200u);
  EXPECT_EQ(Download(dir_ + "/dd").status, 400u);
  EXPECT_EQ(Call(http::verb::delete_, "/files?path=/x", "", "").status, 405u);
  auto envs = Call(http::verb::get, "/envs", "", "");
  ASSERT_EQ(envs.status, 200u);
  EXPECT_EQ(envs.Json(), json::parse(R"({"A":"2","PATH":"/usr/bin"})"));
  EXPECT_EQ(Call(http::verb::get, "/nope", "", "").status, 404u);
}

TEST_F(EnvdFilesTest, AnotherUsersIdentity) {
  if (::geteuid() != 0) GTEST_SKIP() << "acting as another user needs root (setfsuid)";
  ASSERT_EQ(Rpc("MakeDir", {{"path", dir_ + "/root-only"}}).status, 200u);
  ASSERT_EQ(::chmod((dir_ + "/root-only").c_str(), 0700), 0);
  auto denied = Rpc("MakeDir", {{"path", dir_ + "/root-only/x"}}, "nobody");
  EXPECT_EQ(denied.Json()["code"], "permission_denied") << denied.body;
  auto up = Call(http::verb::post, "/files?path=" + dir_ + "/root-only/y&username=nobody", "x",
                 "application/octet-stream");
  EXPECT_EQ(up.status, 403u) << up.body;
  // What nobody may write is nobody's.
  ASSERT_EQ(::chmod(agent_.dir().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  auto mine = Call(http::verb::post, "/files?path=" + dir_ + "/nobodys&username=nobody", "x",
                   "application/octet-stream");
  ASSERT_EQ(mine.status, 200u) << mine.body;
  EXPECT_EQ(Rpc("Stat", {{"path", dir_ + "/nobodys"}}).Json()["entry"]["owner"], "nobody");
}

}  // namespace
}  // namespace wb::daemon::e2b
