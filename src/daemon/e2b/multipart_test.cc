// The upload bodies of envd's POST /files: the streaming multipart parser
// and the gzip inflater, fed whole and in pieces of every size.
#include "daemon/e2b/multipart.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include "daemon/e2b/gzip_test_util.h"
#include "tests/assert_ok.h"

namespace wb::daemon::e2b {
namespace {

struct Part {
  PartHeaders h;
  std::string data;
};

// Feeds body in pieces of `step` bytes (0: whole); the parts, or the error.
Result<std::vector<Part>> ParseAll(const std::string& boundary, const std::string& body,
                                   size_t step = 0) {
  MultipartParser p(boundary);
  std::vector<Part> parts;
  bool open = false;
  for (size_t at = 0; at < body.size() || (at == 0 && body.empty());) {
    size_t n = step ? std::min(step, body.size() - at) : body.size() - at;
    std::vector<MultipartParser::Event> evs;
    WB_RETURN_IF_ERROR(p.Feed(std::string_view(body).substr(at, n), evs));
    for (auto& e : evs) {
      if (e.kind == MultipartParser::Event::kBegin) {
        EXPECT_FALSE(open);
        open = true;
        parts.push_back(Part{e.part, ""});
      } else if (e.kind == MultipartParser::Event::kData) {
        EXPECT_TRUE(open);
        parts.back().data += e.data;
      } else {
        EXPECT_TRUE(open);
        open = false;
      }
    }
    at += n;
    if (body.empty()) break;
  }
  WB_RETURN_IF_ERROR(p.Finish());
  return parts;
}

std::string TwoFiles() {
  return "preamble to ignore\r\n"
         "--XyZ\r\n"
         "Content-Disposition: form-data; name=\"file\"; filename=\"/a/1.txt\"\r\n"
         "Content-Type: application/octet-stream\r\n"
         "\r\n"
         "one\r\n--XyQ not a boundary\r\n"
         "--XyZ  \r\n"
         "content-disposition: form-data; name=file; filename=\"/a/\\\"2\\\".txt\"\r\n"
         "\r\n"
         "\r\n--X\r\n"
         "--XyZ--\r\n"
         "epilogue --XyZ junk";
}

TEST(MultipartTest, BoundaryFromContentType) {
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(*MultipartBoundary("Multipart/Form-Data;charset=x; boundary=\"a b;c\""), "a b;c");
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=----formdata-undici-0123"),
            "----formdata-undici-0123");
  for (const char* bad : {"application/json; boundary=x", "multipart/form-data",
                          "multipart/form-data; boundary=", "multipart/form-data; boundary=\"x",
                          "multipart/form-data; boundary"}) {
    SCOPED_TRACE(bad);
    auto b = MultipartBoundary(bad);
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(b.error().ToString().find("Content-Type"), std::string::npos) << b.error().ToString();
  }
  EXPECT_FALSE(MultipartBoundary("multipart/form-data; boundary=" + std::string(71, 'a')).ok());
}

TEST(MultipartTest, PartsWholeAndInEveryPieceSize) {
  const std::string body = TwoFiles();
  for (size_t step : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{64}}) {
    SCOPED_TRACE(step);
    auto parts = ParseAll("XyZ", body, step);
    ASSERT_OK(parts);
    ASSERT_EQ(parts->size(), 2u);
    EXPECT_EQ((*parts)[0].h.name, "file");
    EXPECT_EQ(*(*parts)[0].h.filename, "/a/1.txt");
    EXPECT_EQ((*parts)[0].h.content_type, "application/octet-stream");
    EXPECT_EQ((*parts)[0].data, "one\r\n--XyQ not a boundary");
    EXPECT_EQ((*parts)[1].h.name, "file");
    EXPECT_EQ(*(*parts)[1].h.filename, "/a/\"2\".txt");
    EXPECT_EQ((*parts)[1].data, "\r\n--X");
  }
}

TEST(MultipartTest, EmptyPartsAndExtendedFilenames) {
  auto parts = ParseAll("b",
                        "--b\r\n"
                        "Content-Disposition: form-data; name=\"f\"; filename=\"x\"; "
                        "filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n"
                        "\r\n"
                        "\r\n--b\r\n"
                        "Content-Disposition: form-data; name=\"g\"\r\n\r\nv\r\n--b--");
  ASSERT_OK(parts);
  ASSERT_EQ(parts->size(), 2u);
  EXPECT_EQ(*(*parts)[0].h.filename, "\xc3\xa9t\xc3\xa9.txt");
  EXPECT_EQ((*parts)[0].data, "");
  EXPECT_FALSE((*parts)[1].h.filename);
  EXPECT_EQ((*parts)[1].data, "v");
}

TEST(MultipartTest, BadBodiesSayWhatIsWrong) {
  struct Case {
    std::string body;
    const char* want;
  };
  const std::string cd = "Content-Disposition: form-data; name=\"file\"\r\n";
  for (const Case& c : std::initializer_list<Case>{
           {"", "no boundary line '--b'"},
           {"no boundary here", "no boundary line '--b'"},
           {"--b\r\n" + cd + "\r\ndata", "no closing boundary '--b--'"},
           {"--b\r\n" + cd + "\r\ndata\r\n--b", "no closing boundary"},
           {"--bx\r\n", "must end with CRLF"},
           {"--b\r\nno colon here\r\n\r\n", "not 'Name: value'"},
           {"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "without a Content-Disposition"},
           {"--b\r\n" + cd + cd + "\r\n", "given twice"},
           {"--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\n", "unterminated"},
           {"--b\r\n" + std::string(20000, 'h'), "headers exceed 16384 bytes"},
           {"--b" + std::string(300, ' ') + "\r\n", "more than 256 blanks"},
       }) {
    SCOPED_TRACE(c.body.substr(0, 60));
    for (size_t step : {size_t{0}, size_t{1}}) {
      auto r = ParseAll("b", c.body, step);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(r.error().ToString().find(c.want), std::string::npos) << r.error().ToString();
    }
  }
  // After a failure the parser stays failed.
  MultipartParser p("b");
  std::vector<MultipartParser::Event> evs;
  EXPECT_FALSE(p.Feed("--bx\r\n", evs).ok());
  EXPECT_FALSE(p.Feed("--b--", evs).ok());
}

TEST(MultipartTest, TooManyParts) {
  std::string body;
  for (size_t i = 0; i <= MultipartParser::kMaxParts; ++i) {
    body += "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n";
  }
  body += "--b--";
  auto r = ParseAll("b", body);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("more than 1000 parts"), std::string::npos);
}

std::string Gzip(const std::string& data) { return GzipForTest(data); }

Result<std::string> Gunzip(const std::string& gz, size_t step) {
  GzipInflater g;
  std::string out;
  for (size_t at = 0; at < gz.size(); at += step) {
    std::string_view piece = std::string_view(gz).substr(at, step);
    g.SetInput(piece);
    for (;;) {
      auto o = g.Next();
      if (!o.ok()) return o.error();
      if (o->empty()) break;
      EXPECT_LE(o->size(), GzipInflater::kOutPiece);
      out += *o;
    }
  }
  WB_RETURN_IF_ERROR(g.Finish());
  EXPECT_EQ(g.total_out(), out.size());
  return out;
}

TEST(GzipInflaterTest, InflatesInPiecesOfAnySize) {
  std::string data;
  for (int i = 0; i < 2000000; ++i) data += static_cast<char>((i * 31) ^ (i >> 9));
  const std::string gz = Gzip(data);
  for (size_t step : {size_t{1} << 20, size_t{4096}, size_t{1}}) {
    if (step == 1) {
      // Byte by byte over a small stream (the big one takes too long).
      auto small = Gunzip(Gzip("hello, gzip"), 1);
      ASSERT_OK(small);
      EXPECT_EQ(*small, "hello, gzip");
      continue;
    }
    auto out = Gunzip(gz, step);
    ASSERT_OK(out);
    EXPECT_TRUE(*out == data);
  }
  // Concatenated members are one stream, as gunzip reads them.
  auto two = Gunzip(Gzip("ab") + Gzip("cd"), 3);
  ASSERT_OK(two);
  EXPECT_EQ(*two, "abcd");
  // A bomb comes out in bounded pieces: 64 MiB of zeros from ~64 KiB.
  auto zeros = Gzip(std::string(64u << 20, '\0'));
  GzipInflater g;
  g.SetInput(zeros);
  uint64_t total = 0;
  for (;;) {
    auto o = g.Next();
    ASSERT_OK(o);
    if (o->empty()) break;
    ASSERT_LE(o->size(), GzipInflater::kOutPiece);
    total += o->size();
  }
  EXPECT_EQ(total, 64u << 20);
}

TEST(GzipInflaterTest, BadStreamsAreRefused) {
  auto junk = Gunzip("this is not gzip at all", 5);
  ASSERT_FALSE(junk.ok());
  EXPECT_EQ(junk.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(junk.error().ToString().find("not a valid gzip stream"), std::string::npos)
      << junk.error().ToString();
  std::string gz = Gzip("some data that is long enough to be cut");
  auto cut = Gunzip(gz.substr(0, gz.size() - 6), 4);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().ToString().find("truncated"), std::string::npos);
  auto trailing = Gunzip(gz + "garbage!", 7);
  EXPECT_FALSE(trailing.ok());
  GzipInflater empty;
  EXPECT_FALSE(empty.Finish().ok());
}

}  // namespace
}  // namespace wb::daemon::e2b
