// The bodies of envd's POST /files (docs/e2b.md, "envd: files"): a
// streaming multipart/form-data parser (RFC 7578 over RFC 2046's framing)
// and a streaming gzip inflater (Content-Encoding: gzip). Both are pure and
// take their input in pieces of any size, holding at most a bounded tail,
// never a whole part: a file of any size passes through.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::daemon::e2b {

// "multipart/form-data; boundary=XYZ" -> "XYZ" (quoted or not; 1 to 70
// characters, RFC 2046). invalid_argument naming what is wrong otherwise.
[[nodiscard]] Result<std::string> MultipartBoundary(std::string_view content_type);

// What a part's headers say.
struct PartHeaders {
  std::string name;                     // Content-Disposition's name
  std::optional<std::string> filename;  // filename (or filename*, RFC 5987), as sent
  std::string content_type;
};
// A part's header block (the lines before the empty one, CRLF separated).
[[nodiscard]] Result<PartHeaders> ParsePartHeaders(std::string_view block);

class MultipartParser {
 public:
  static constexpr size_t kMaxHeaderBytes = 16 * 1024;  // one part's header block
  static constexpr size_t kMaxParts = 1000;
  static constexpr size_t kMaxPadding = 256;  // blanks after a boundary

  struct Event {
    enum Kind { kBegin, kData, kEnd } kind;
    PartHeaders part;  // kBegin
    std::string data;  // kData
  };

  explicit MultipartParser(std::string boundary);

  // Parses the next piece of the body, appending what it completes to out
  // (kBegin, kData pieces, kEnd per part). Errors (invalid_argument) name
  // what is wrong; the parser is then done with.
  [[nodiscard]] Result<void> Feed(std::string_view in, std::vector<Event>& out);
  // At the end of the body: invalid_argument unless the closing boundary
  // ("--B--") was seen.
  [[nodiscard]] Result<void> Finish() const;
  size_t parts() const { return parts_; }

 private:
  enum class State { kPreamble, kAfterBoundary, kHeaders, kBody, kEpilogue, kFailed };
  Error Bad(std::string why);
  std::string boundary_;
  std::string delimiter_;  // "\r\n--" + boundary
  std::string buf_;
  State state_ = State::kPreamble;
  size_t parts_ = 0;
};

// A gzip stream (one or more members, RFC 1952) inflated piece by piece.
class GzipInflater {
 public:
  static constexpr size_t kOutPiece = 256 * 1024;

  GzipInflater();
  ~GzipInflater();
  GzipInflater(const GzipInflater&) = delete;
  GzipInflater& operator=(const GzipInflater&) = delete;

  // The next compressed piece; it must stay valid until Next returns an
  // empty piece (all of it consumed).
  void SetInput(std::string_view in);
  // The next inflated piece (at most kOutPiece bytes, valid until the next
  // call); empty once the input is consumed. invalid_argument for data that
  // is not gzip.
  [[nodiscard]] Result<std::string_view> Next();
  // At the end of the body: invalid_argument unless the last member ended.
  [[nodiscard]] Result<void> Finish() const;
  uint64_t total_out() const { return total_out_; }

 private:
  z_stream z_{};
  bool init_ = false;
  bool member_done_ = false;  // the last member ended (Z_STREAM_END)
  bool started_ = false;      // any input seen
  std::string out_;
  uint64_t total_out_ = 0;
};

}  // namespace wb::daemon::e2b
