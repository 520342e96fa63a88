#include "daemon/code_run.h"

#include <gtest/gtest.h>

namespace wb::daemon {
namespace {

// Feeds the response one byte at a time (every split point), then ends it.
std::vector<std::string> LinesOf(const std::string& response, NdjsonResponseReader& r) {
  std::vector<std::string> lines;
  for (char c : response) {
    auto fed = r.Feed(std::string_view(&c, 1), lines);
    EXPECT_TRUE(fed.ok()) << fed.error().ToString();
  }
  auto end = r.End(lines);
  EXPECT_TRUE(end.ok()) << end.error().ToString();
  return lines;
}

TEST(NdjsonResponseReader, ChunkedAtEverySplit) {
  NdjsonResponseReader r;
  const std::string body = "{\"type\":\"stdout\"}\n\n{\"type\":\"result\",\"text\":\"2\"}\n";
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  chunked += "5\r\n" + body.substr(0, 5) + "\r\n";
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size() - 5);
  chunked += std::string(size) + "\r\n" + body.substr(5) + "\r\n0\r\n\r\n";
  auto lines = LinesOf(chunked, r);
  EXPECT_EQ(r.status(), 200u);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"type\":\"stdout\"}",
                                             "{\"type\":\"result\",\"text\":\"2\"}"}));
}

TEST(NdjsonResponseReader, CloseDelimitedLastLineWithoutNewline) {
  NdjsonResponseReader r;
  auto lines = LinesOf("HTTP/1.1 200 OK\r\n\r\n{\"a\":1}\r\n{\"b\":2}", r);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
}

TEST(NdjsonResponseReader, ErrorStatusKeepsTheBody) {
  NdjsonResponseReader r;
  auto lines =
      LinesOf("HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\nContext c not found", r);
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(r.status(), 404u);
  EXPECT_EQ(r.error_body(), "Context c not found");
}

TEST(NdjsonResponseReader, NotHttpAndNoAnswerAreErrors) {
  NdjsonResponseReader r;
  std::vector<std::string> lines;
  EXPECT_FALSE(r.Feed("SSH-2.0-x\r\n\r\n", lines).ok());
  NdjsonResponseReader empty;
  EXPECT_FALSE(empty.End(lines).ok());
  NdjsonResponseReader cut;
  ASSERT_TRUE(cut.Feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", lines).ok());
  EXPECT_FALSE(cut.End(lines).ok());
}

TEST(CodeRequest, ParsesAndRefuses) {
  auto r = ParseCodeRequest(
      R"({"code":"1+1","language":"python","env_vars":{"A":"b"},"timeout_ms":5000})");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->code, "1+1");
  EXPECT_EQ(r->timeout_ms, 5000u);
  EXPECT_EQ(ExecuteBody(*r), R"({"code":"1+1","env_vars":{"A":"b"},"language":"python"})");
  EXPECT_EQ(ExecuteBody(*ParseCodeRequest(R"({"code":"x","context_id":"c"})")),
            R"({"code":"x","context_id":"c"})");
  for (const char* bad :
       {R"({})", R"({"code":1})", R"({"code":"x","language":"p","context_id":"c"})",
        R"({"code":"x","env_vars":{"A":1}})", R"({"code":"x","nope":1})", R"([1])",
        R"({"code":"x","timeout_ms":-1})"}) {
    auto e = ParseCodeRequest(bad);
    EXPECT_FALSE(e.ok()) << bad;
    if (!e.ok()) {
      EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument) << bad;
    }
  }
}

}  // namespace
}  // namespace wb::daemon
