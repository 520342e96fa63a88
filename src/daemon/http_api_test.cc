#include "daemon/http_api.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "tests/assert_ok.h"

namespace wb::daemon {
namespace {

TEST(HttpApiTest, ParsesTheSocketFieldsAndTheHttpForms) {
  auto r = ParseHttpRunRequest(
      R"({"cmd":["sh","-c","cat"],"image":"busybox","env":{"B":"2","A":"1"},"workdir":"/tmp",)"
      R"("user":"nobody","stdin":"hi\n","timeout_ms":5000,"memory":67108864,"pids":10,"cpus":0.5})");
  ASSERT_OK(r);
  EXPECT_EQ(r->cmd, (std::vector<std::string>{"sh", "-c", "cat"}));
  EXPECT_EQ(*r->image, "busybox");
  EXPECT_EQ(r->env, (std::vector<std::string>{"A=1", "B=2"}));
  EXPECT_EQ(r->workdir, "/tmp");
  EXPECT_EQ(r->user, "nobody");
  EXPECT_EQ(*r->stdin_data, "hi\n");
  EXPECT_EQ(r->timeout_ms, 5000u);
  EXPECT_EQ(*r->memory_bytes, 64u << 20);
  EXPECT_EQ(*r->pids, 10u);
  EXPECT_DOUBLE_EQ(*r->cpus, 0.5);
  EXPECT_FALSE(r->stream);

  auto arr = ParseHttpRunRequest(R"({"cmd":["env"],"env":["K=V"]})");
  ASSERT_TRUE(arr.ok());
  EXPECT_EQ(arr->env, (std::vector<std::string>{"K=V"}));
}

TEST(HttpApiTest, StdinBase64CarriesArbitraryBytes) {
  std::string bytes("\x00\xff\x80\n", 4);
  auto r = ParseHttpRunRequest(R"({"cmd":["cat"],"stdin_base64":")" + Base64Encode(bytes) + "\"}");
  ASSERT_OK(r);
  EXPECT_EQ(*r->stdin_data, bytes);
}

// Issue 19, finding 4: a 200 KB body of nested arrays took the daemon down
// (re-serialising it for the socket's parser overflowed the stack).
TEST(HttpApiTest, DeepNestingIsABadRequestNotACrash) {
  for (const std::string& body :
       {std::string(200 * 1024, '['),
        R"({"cmd":["x"],"user":)" + std::string(100 * 1024, '[') + std::string(100 * 1024, ']') +
            "}",
        R"({"cmd":["x"],"env":{"A":)" + std::string(100 * 1024, '[') + "}}"}) {
    auto r = ParseHttpRunRequest(body);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().ToString(), "bad request(body): JSON nested deeper than 64 levels");
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(HttpApiTest, BadRequestsNameTheField) {
  struct Case {
    const char* body;
    const char* want;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"{bad", "bad request(body): not valid JSON"},
           {"[1]", "bad request(body): expected a JSON object"},
           {"{}", "bad request(cmd): missing"},
           {R"({"cmd":[]})", "bad request(cmd): empty command"},
           {R"({"cmd":["x"],"op":"stop"})", "bad request(op)"},
           {R"({"cmd":["x"],"stream":true})", "bad request(stream)"},
           {R"({"cmd":["x"],"env":{"A=B":"1"}})", "bad request(env): bad name 'A=B'"},
           {R"({"cmd":["x"],"env":{"A":1}})", "bad request(env): the value of A must be a string"},
           {R"({"cmd":["x"],"stdin_base64":"!!!!"})",
            "bad request(stdin_base64): not valid base64"},
           {R"({"cmd":["x"],"stdin_base64":"YQ"})", "bad request(stdin_base64): not valid base64"},
           {R"({"cmd":["x"],"stdin":"a","stdin_base64":"YQ=="})",
            "bad request(stdin_base64): give stdin"},
           {R"({"cmd":["x"],"stdin":[1,2]})", "bad request(stdin): expected a string"},
           {R"({"cmd":["x"],"timeout_ms":-1})", "bad request(timeout_ms)"},
           {R"({"cmd":["x"],"cpus":2000})", "bad request(cpus): at most 1024"},
           {R"({"cmd":["x"],"timeoutms":5})", "bad request(timeoutms): unknown field"},
           {R"({"cmd":["x"],"memory":1})", "bad request(memory): at least 4194304 bytes"},
       }) {
    auto r = ParseHttpRunRequest(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_NE(r.error().ToString().find(c.want), std::string::npos)
        << c.body << " -> " << r.error().ToString();
  }
}

TEST(HttpApiTest, ResponsesCarryOutputAsBase64) {
  proto::RunResponse r;
  r.stdout_data = std::string("hi\n\x00\xff", 5);
  r.stderr_data = "oops";
  r.exit_code = 3;
  r.timed_out = true;
  r.sandbox = "abc";
  auto j = nlohmann::json::parse(HttpRunResponseJson(r));
  EXPECT_EQ(*Base64Decode(j["stdout"].get<std::string>(), "x"), r.stdout_data);
  EXPECT_EQ(*Base64Decode(j["stderr"].get<std::string>(), "x"), "oops");
  EXPECT_EQ(j["exit_code"], 3);
  EXPECT_TRUE(j["error"].is_null());
  EXPECT_EQ(j["timed_out"], true);
  EXPECT_EQ(j["sandbox"], "abc");

  auto e = nlohmann::json::parse(HttpRunResponseJson(proto::ErrorResponse("bad \"thing\"")));
  EXPECT_EQ(e["error"], "bad \"thing\"");
  EXPECT_EQ(e["exit_code"], -1);

  auto c = nlohmann::json::parse(HttpChunkJson(true, "x"));
  EXPECT_EQ(c["stream"], "stderr");
  EXPECT_EQ(c["data"], "eA==");
}

TEST(HttpApiTest, ErrorKindsMapToStatusCodes) {
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kNone), 200u);
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kBadRequest), 400u);
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kNoImage), 404u);
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kBusy), 429u);
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kDraining), 503u);
  EXPECT_EQ(HttpStatusFor(RunErrorKind::kInternal), 500u);
  EXPECT_EQ(KindOfError(Fail(ErrorCode::kBusy, "busy", "busybox", "queue full")),
            RunErrorKind::kBusy);
  EXPECT_EQ(KindOfError(Fail(ErrorCode::kDraining, "pool", "busybox", "stopping")),
            RunErrorKind::kDraining);
  EXPECT_EQ(KindOfError(Fail(ErrorCode::kInvalidArgument, "bad request", "cmd", "missing")),
            RunErrorKind::kBadRequest);
  EXPECT_EQ(KindOfError(Fail("create sandbox", "x", "agent died")), RunErrorKind::kInternal);
  EXPECT_EQ(KindOfError(ErrnoValue(ENOSPC, "mkdir", "/x")), RunErrorKind::kInternal);
  auto j = nlohmann::json::parse(HttpErrorJson("no slot", RunErrorKindName(RunErrorKind::kBusy)));
  EXPECT_EQ(j["kind"], "busy");
  EXPECT_EQ(j["error"], "no slot");
}

TEST(HttpApiTest, ErrorKindIsTheCodeNeverTheText) {
  // Text that once decided the kind decides nothing now: a wrap cannot
  // change the kind, and words in a message cannot forge one.
  EXPECT_EQ(KindOfError(Fail("busy", "busybox", "queue full")), RunErrorKind::kInternal);
  EXPECT_EQ(KindOfError(Fail("pool", "x", "the daemon is shutting down")), RunErrorKind::kInternal);
  Error busy = Fail(ErrorCode::kBusy, "busy", "busybox", "queue full").Wrap("run");
  EXPECT_EQ(KindOfError(busy), RunErrorKind::kBusy);
  // Every failure the HTTP parser reports is a bad request.
  for (const char* body : {"not json", "[]", R"({"cmd":["true"],"bogus":1})",
                           R"({"cmd":["true"],"stdin_base64":"***"})", R"({"cmd":[]})"}) {
    auto r = ParseHttpRunRequest(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(KindOfError(r.error()), RunErrorKind::kBadRequest) << body;
  }
}

TEST(HttpApiTest, Base64RoundTripsEveryLength) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 7) {
    auto d = Base64Decode(Base64Encode(all.substr(0, n)), "x");
    ASSERT_TRUE(d.ok()) << n;
    EXPECT_EQ(*d, all.substr(0, n));
  }
  EXPECT_EQ(Base64Encode("hi\n"), "aGkK");
}

TEST(HttpApiTest, ListenAddresses) {
  auto a = ParseListenAddress("127.0.0.1:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_TRUE(a->loopback);
  EXPECT_TRUE(ParseListenAddress("127.1.2.3:1")->loopback);
  EXPECT_TRUE(ParseListenAddress("localhost:80")->loopback);
  auto v6 = ParseListenAddress("[::1]:9000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->loopback);
  EXPECT_FALSE(ParseListenAddress("0.0.0.0:8080")->loopback);
  EXPECT_FALSE(ParseListenAddress("[::]:8080")->loopback);
  EXPECT_FALSE(ParseListenAddress("10.1.2.3:8080")->loopback);
  for (const char* bad : {"8080", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
                          "example.com:80", "[::1]8080", ":80"}) {
    auto r = ParseListenAddress(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().ToString().find("--http"), std::string::npos) << r.error().ToString();
  }
}

TEST(HttpApiTest, BearerTokens) {
  EXPECT_EQ(*BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(*BearerToken("bearer  abc "), "abc");
  EXPECT_FALSE(BearerToken("Basic abc"));
  EXPECT_FALSE(BearerToken("Bearer "));
  EXPECT_FALSE(BearerToken(""));
  EXPECT_TRUE(TokenEquals("s3cret-token", "s3cret-token"));
  EXPECT_FALSE(TokenEquals("s3cret-tokem", "s3cret-token"));
  EXPECT_FALSE(TokenEquals("s3cret", "s3cret-token"));
  EXPECT_FALSE(TokenEquals("s3cret-token-and-more", "s3cret-token"));
  EXPECT_FALSE(TokenEquals("", "s3cret-token"));
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wb-token-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::string Write(const std::string& content, mode_t mode) {
    std::string p = dir_ + "/t" + std::to_string(n_++);
    EXPECT_TRUE(WriteFileAtomic(p, content, mode).ok());
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p;
  }
  std::string dir_;
  int n_ = 0;
};

TEST_F(TokenFileTest, AcceptsOnePrivateLine) {
  auto t = ReadTokenFile(Write("0123456789abcdef0123\n", 0600));
  ASSERT_OK(t);
  EXPECT_EQ(*t, "0123456789abcdef0123");
}

TEST_F(TokenFileTest, RefusesOpenModesEmptyShortAndMissingFiles) {
  EXPECT_NE(ReadTokenFile(Write("0123456789abcdef0123", 0644)).error().ToString().find("chmod 600"),
            std::string::npos);
  EXPECT_NE(ReadTokenFile(Write("\n", 0600)).error().ToString().find("is empty"),
            std::string::npos);
  EXPECT_NE(ReadTokenFile(Write("short", 0600)).error().ToString().find("too short"),
            std::string::npos);
  EXPECT_NE(
      ReadTokenFile(Write("0123456789abcdef 0123", 0600)).error().ToString().find("one token"),
      std::string::npos);
  EXPECT_NE(ReadTokenFile(dir_ + "/missing").error().ToString().find("No such file"),
            std::string::npos);
}

TEST_F(TokenFileTest, GeneratesAPrivateTokenOnceAndKeepsIt) {
  const std::string path = DefaultTokenPath(dir_);
  EXPECT_EQ(path, dir_ + "/http-token");
  bool created = false;
  ASSERT_OK_AND_ASSIGN(std::string first, LoadOrCreateTokenFile(path, &created));
  EXPECT_TRUE(created);
  EXPECT_EQ(first.size(), 64u);
  EXPECT_EQ(first.find_first_not_of("0123456789abcdef"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The next start reads the same token: clients keep working across restarts.
  ASSERT_OK_AND_ASSIGN(std::string again, LoadOrCreateTokenFile(path, &created));
  EXPECT_FALSE(created);
  EXPECT_EQ(again, first);
  // A token file someone opened up is refused, never silently replaced.
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto opened = LoadOrCreateTokenFile(path, &created);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.error().ToString().find("chmod 600"), std::string::npos);
  // A missing state dir is an error naming the path.
  auto missing = LoadOrCreateTokenFile(dir_ + "/no/such/http-token", &created);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find(dir_ + "/no/such/http-token"), std::string::npos);
}

TEST(HttpApiTest, BrowserRequestsAreRefused) {
  using std::nullopt;
  // Programs (curl, SDKs) send no Origin and the Host they connected to.
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "127.0.0.1:8080", true), nullopt);
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "localhost:8080", true), nullopt);
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "LOCALHOST", true), nullopt);
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "[::1]:80", true), nullopt);
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "127.3.2.1", true), nullopt);
  EXPECT_EQ(BrowserRequestRefusal(nullopt, nullopt, true), nullopt);  // HTTP/1.0
  // Any Origin: a web page (cross-site form, fetch) is behind it.
  auto origin = BrowserRequestRefusal("https://evil.example", "127.0.0.1:8080", true);
  ASSERT_TRUE(origin);
  EXPECT_NE(origin->find("https://evil.example"), std::string::npos);
  EXPECT_TRUE(BrowserRequestRefusal("null", "127.0.0.1:8080", true));
  EXPECT_TRUE(BrowserRequestRefusal("http://127.0.0.1:8080", "127.0.0.1:8080", false));
  // DNS rebinding: a page's own name resolving to 127.0.0.1.
  for (const char* host :
       {"evil.example:8080", "evil.example", "localhost.evil.example", "127.0.0.1.evil.example",
        "128.0.0.1:80", "[::2]:80", "[::1]x", "localhost:", "localhost:port", ""}) {
    auto r = BrowserRequestRefusal(nullopt, host, true);
    ASSERT_TRUE(r) << host;
    EXPECT_NE(r->find("Host"), std::string::npos) << *r;
  }
  // Off loopback the token is the defence; any Host name may be in use.
  EXPECT_EQ(BrowserRequestRefusal(nullopt, "sandboxes.example.com", false), nullopt);
}

TEST(HttpApiTest, JsonContentTypes) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType(" application/json "));
  EXPECT_FALSE(IsJsonContentType("text/plain"));
  EXPECT_FALSE(IsJsonContentType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonContentType("multipart/form-data; boundary=x"));
  EXPECT_FALSE(IsJsonContentType("application/jsonx"));
  EXPECT_FALSE(IsJsonContentType(""));
}

}  // namespace
}  // namespace wb::daemon
