// What envd's POST /files reads from the network (docs/e2b.md, "envd:
// files"): a multipart/form-data body (MultipartParser), its Content-Type's
// boundary (MultipartBoundary), a part's headers (ParsePartHeaders) and a
// gzip body (GzipInflater).
//
// Input: byte 0 picks the piece size the body is fed in; the rest is the
// body (boundary "b"), also read as a Content-Type, a header block and gzip.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/e2b/multipart.h"
#include "fuzz/fuzz_check.h"

using namespace wb::daemon::e2b;

namespace {

struct Parsed {
  bool ok = false;
  std::vector<std::string> names, filenames, datas;
};

// The parts of body fed `step` bytes at a time (0: whole).
Parsed Parse(std::string_view body, size_t step) {
  Parsed out;
  MultipartParser p("b");
  bool open = false;
  size_t at = 0;
  do {
    size_t n = step ? std::min(step, body.size() - at) : body.size() - at;
    std::vector<MultipartParser::Event> evs;
    if (!p.Feed(body.substr(at, n), evs).ok()) return out;
    for (auto& e : evs) {
      if (e.kind == MultipartParser::Event::kBegin) {
        FUZZ_CHECK(!open);
        open = true;
        out.names.push_back(e.part.name);
        out.filenames.push_back(e.part.filename.value_or("<none>"));
        out.datas.emplace_back();
      } else if (e.kind == MultipartParser::Event::kData) {
        FUZZ_CHECK(open);
        FUZZ_CHECK(!e.data.empty());
        out.datas.back() += e.data;
      } else {
        FUZZ_CHECK(open);
        open = false;
      }
    }
    at += n;
  } while (at < body.size());
  FUZZ_CHECK(p.parts() <= MultipartParser::kMaxParts);
  out.ok = p.Finish().ok();
  // A finished body has closed every part it opened.
  if (out.ok) FUZZ_CHECK(!open);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] % 17;  // 0: whole
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);

  // Pieces of any size parse exactly as the whole body.
  Parsed whole = Parse(body, 0);
  Parsed pieces = Parse(body, step ? step : 1);
  FUZZ_CHECK(whole.ok == pieces.ok);
  if (whole.ok) {
    FUZZ_CHECK(whole.names == pieces.names);
    FUZZ_CHECK(whole.filenames == pieces.filenames);
    FUZZ_CHECK(whole.datas == pieces.datas);
  }

  if (auto b = MultipartBoundary(body); b.ok()) {
    FUZZ_CHECK(!b->empty() && b->size() <= 70);
  }
  (void)ParsePartHeaders(body);

  // Inflating stays in bounded pieces whatever the input claims.
  GzipInflater g;
  g.SetInput(body);
  uint64_t total = 0;
  for (;;) {
    auto o = g.Next();
    if (!o.ok() || o->empty()) break;
    FUZZ_CHECK(o->size() <= GzipInflater::kOutPiece);
    total += o->size();
    if (total > (64u << 20)) break;  // a bomb: enough seen
  }
  return 0;
}
