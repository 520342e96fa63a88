#include "daemon/e2b/multipart.h"

#include <utility>

#include "base/strings.h"

namespace wb::daemon::e2b {

namespace {

Error BadBody(std::string what, std::string why) {
  return Fail(ErrorCode::kInvalidArgument, "multipart", std::move(what), std::move(why));
}

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// The parameters after a header value's first ';': key=token or
// key="quoted \"string\"". Keys are lower-cased.
Result<std::vector<std::pair<std::string, std::string>>> ParseParams(std::string_view s,
                                                                     const char* header) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  auto skip = [&]() {
    while (i < s.size() && IsBlank(s[i])) ++i;
  };
  while (i < s.size()) {
    skip();
    if (i < s.size() && s[i] == ';') {
      ++i;
      continue;
    }
    if (i >= s.size()) break;
    size_t eq = s.find('=', i);
    size_t semi = s.find(';', i);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      return BadBody(header, "a parameter without a value: '" +
                                 std::string(Trim(s.substr(i, semi - i))) + "'");
    }
    std::string key = AsciiLower(Trim(s.substr(i, eq - i)));
    if (key.empty()) return BadBody(header, "a parameter without a name");
    i = eq + 1;
    skip();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        char c = s[i++];
        if (c == '\\' && i < s.size()) {
          value += s[i++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return BadBody(header, "unterminated quoted value of " + key);
      skip();
      if (i < s.size() && s[i] != ';') {
        return BadBody(header, "unexpected text after the quoted value of " + key);
      }
    } else {
      size_t end = s.find(';', i);
      value = std::string(Trim(s.substr(i, end == std::string_view::npos ? end : end - i)));
      i = end == std::string_view::npos ? s.size() : end;
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

// RFC 5987's ext-value: charset'language'percent-encoded.
Result<std::string> DecodeExtValue(std::string_view v) {
  size_t a = v.find('\'');
  size_t b = a == std::string_view::npos ? a : v.find('\'', a + 1);
  if (b == std::string_view::npos) return BadBody("Content-Disposition", "bad filename*");
  std::string charset = AsciiLower(v.substr(0, a));
  if (charset != "utf-8" && charset != "us-ascii") {
    return BadBody("Content-Disposition",
                   "filename* in charset '" + charset + "' (only UTF-8 is taken)");
  }
  std::string out;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = b + 1; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    if (i + 2 >= v.size() || hex(v[i + 1]) < 0 || hex(v[i + 2]) < 0) {
      return BadBody("Content-Disposition", "bad % escape in filename*");
    }
    out += static_cast<char>(hex(v[i + 1]) * 16 + hex(v[i + 2]));
    i += 2;
  }
  return out;
}

}  // namespace

Result<std::string> MultipartBoundary(std::string_view content_type) {
  std::string_view media = Trim(content_type.substr(0, content_type.find(';')));
  if (!StartsWith(AsciiLower(media), "multipart/")) {
    return BadBody("Content-Type",
                   "expected multipart/form-data, got '" + std::string(media) + "'");
  }
  size_t semi = content_type.find(';');
  auto params = ParseParams(
      semi == std::string_view::npos ? std::string_view() : content_type.substr(semi + 1),
      "Content-Type");
  if (!params.ok()) return params.error();
  for (const auto& [k, v] : *params) {
    if (k != "boundary") continue;
    if (v.empty() || v.size() > 70) {
      return BadBody("Content-Type", "the boundary must have 1 to 70 characters");
    }
    for (char c : v) {
      if (c == '\r' || c == '\n' || c == '\0') {
        return BadBody("Content-Type", "a control character in the boundary");
      }
    }
    return v;
  }
  return BadBody("Content-Type", "no boundary parameter");
}

Result<PartHeaders> ParsePartHeaders(std::string_view block) {
  PartHeaders h;
  bool disposition = false;
  // Header lines, with obsolete folded continuations joined.
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < block.size()) {
    size_t nl = block.find("\r\n", at);
    std::string_view line = block.substr(at, nl == std::string_view::npos ? nl : nl - at);
    at = nl == std::string_view::npos ? block.size() : nl + 2;
    if (line.empty()) continue;
    if (IsBlank(line[0]) && !lines.empty()) {
      lines.back() += " " + std::string(Trim(line));
      continue;
    }
    lines.emplace_back(line);
  }
  for (const auto& line : lines) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      return BadBody("part header", "not 'Name: value': '" +
                                        line.substr(0, std::min<size_t>(line.size(), 80)) + "'");
    }
    std::string name = AsciiLower(Trim(std::string_view(line).substr(0, colon)));
    std::string_view value = Trim(std::string_view(line).substr(colon + 1));
    if (name == "content-type") {
      h.content_type = std::string(value);
    } else if (name == "content-disposition") {
      if (disposition) return BadBody("Content-Disposition", "given twice in one part");
      disposition = true;
      size_t semi = value.find(';');
      auto params =
          ParseParams(semi == std::string_view::npos ? std::string_view() : value.substr(semi + 1),
                      "Content-Disposition");
      if (!params.ok()) return params.error();
      std::optional<std::string> ext;
      for (auto& [k, v] : *params) {
        if (k == "name") h.name = std::move(v);
        if (k == "filename") h.filename = std::move(v);
        if (k == "filename*") ext = WB_TRY(DecodeExtValue(v));
      }
      if (ext) h.filename = std::move(ext);  // RFC 6266: filename* wins
    }
  }
  if (!disposition) return BadBody("part", "a part without a Content-Disposition header");
  for (const std::string* s : {&h.name}) {
    if (s->find('\0') != std::string::npos) return BadBody("Content-Disposition", "NUL byte");
  }
  if (h.filename && h.filename->find('\0') != std::string::npos) {
    return BadBody("Content-Disposition", "NUL byte in the filename");
  }
  return h;
}

MultipartParser::MultipartParser(std::string boundary)
    : boundary_(std::move(boundary)), delimiter_("\r\n--" + boundary_) {
  // The first boundary may open the body without a CRLF before it: seen as
  // if the body began with one.
  buf_ = "\r\n";
}

Error MultipartParser::Bad(std::string why) {
  state_ = State::kFailed;
  return BadBody("body", std::move(why));
}

Result<void> MultipartParser::Feed(std::string_view in, std::vector<Event>& out) {
  if (state_ == State::kFailed) return BadBody("body", "the parser already failed");
  if (state_ == State::kEpilogue) return Ok();  // after the closing boundary: ignored
  buf_.append(in.data(), in.size());
  for (;;) {
    switch (state_) {
      case State::kPreamble: {
        size_t at = buf_.find(delimiter_);
        if (at == std::string::npos) {
          // Only a tail that may begin a delimiter is kept.
          if (buf_.size() >= delimiter_.size()) buf_.erase(0, buf_.size() - delimiter_.size() + 1);
          return Ok();
        }
        buf_.erase(0, at + delimiter_.size());
        state_ = State::kAfterBoundary;
        break;
      }
      case State::kAfterBoundary: {
        if (buf_.size() < 2) return Ok();
        if (buf_.compare(0, 2, "--") == 0) {
          state_ = State::kEpilogue;
          buf_.clear();
          return Ok();
        }
        size_t i = 0;
        while (i < buf_.size() && IsBlank(buf_[i])) ++i;
        if (i > kMaxPadding) return Bad("more than 256 blanks after a boundary");
        if (i + 2 > buf_.size()) return Ok();
        if (buf_.compare(i, 2, "\r\n") != 0) {
          return Bad("a boundary line must end with CRLF (or '--' for the last one)");
        }
        buf_.erase(0, i + 2);
        state_ = State::kHeaders;
        break;
      }
      case State::kHeaders: {
        size_t end = std::string::npos;
        size_t skip = 0;
        if (buf_.size() >= 2 && buf_.compare(0, 2, "\r\n") == 0) {
          end = 0;  // no headers at all
          skip = 2;
        } else {
          end = buf_.find("\r\n\r\n");
          skip = 4;
        }
        if (end == std::string::npos) {
          if (buf_.size() > kMaxHeaderBytes) {
            return Bad("a part's headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
          }
          return Ok();
        }
        if (end > kMaxHeaderBytes) {
          return Bad("a part's headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
        }
        auto h = ParsePartHeaders(std::string_view(buf_).substr(0, end));
        if (!h.ok()) {
          state_ = State::kFailed;
          return h.error();
        }
        if (++parts_ > kMaxParts) return Bad("more than " + std::to_string(kMaxParts) + " parts");
        out.push_back(Event{Event::kBegin, std::move(*h), {}});
        buf_.erase(0, end + skip);
        state_ = State::kBody;
        break;
      }
      case State::kBody: {
        size_t at = buf_.find(delimiter_);
        if (at == std::string::npos) {
          // All but a tail that may begin the delimiter is the part's.
          if (buf_.size() >= delimiter_.size()) {
            size_t n = buf_.size() - delimiter_.size() + 1;
            out.push_back(Event{Event::kData, {}, buf_.substr(0, n)});
            buf_.erase(0, n);
          }
          return Ok();
        }
        if (at > 0) out.push_back(Event{Event::kData, {}, buf_.substr(0, at)});
        out.push_back(Event{Event::kEnd, {}, {}});
        buf_.erase(0, at + delimiter_.size());
        state_ = State::kAfterBoundary;
        break;
      }
      case State::kEpilogue:
        buf_.clear();
        return Ok();
      case State::kFailed:
        return BadBody("body", "the parser already failed");
    }
  }
}

Result<void> MultipartParser::Finish() const {
  switch (state_) {
    case State::kEpilogue:
      return Ok();
    case State::kPreamble:
      return BadBody("body", "no boundary line '--" + boundary_ + "' in the body");
    case State::kBody:
    case State::kHeaders:
    case State::kAfterBoundary:
      return BadBody("body",
                     "the body ended inside a part: no closing boundary '--" + boundary_ + "--'");
    case State::kFailed:
      break;
  }
  return BadBody("body", "the parser failed");
}

GzipInflater::GzipInflater() {
  // 16 + MAX_WBITS: a gzip header and trailer (not zlib's, not raw deflate).
  init_ = inflateInit2(&z_, 16 + MAX_WBITS) == Z_OK;
  out_.resize(kOutPiece);
}

GzipInflater::~GzipInflater() {
  if (init_) inflateEnd(&z_);
}

void GzipInflater::SetInput(std::string_view in) {
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z_.avail_in = static_cast<uInt>(in.size());
  if (!in.empty()) started_ = true;
}

Result<std::string_view> GzipInflater::Next() {
  if (!init_) return Fail(ErrorCode::kInternal, "inflateInit2", "", "zlib failed to start");
  for (;;) {
    if (z_.avail_in == 0) return std::string_view();
    if (member_done_) {
      // Another member follows (concatenated gzip streams, as gunzip takes).
      if (inflateReset(&z_) != Z_OK) return Fail(ErrorCode::kInternal, "inflateReset", "", "");
      member_done_ = false;
    }
    z_.next_out = reinterpret_cast<Bytef*>(out_.data());
    z_.avail_out = static_cast<uInt>(out_.size());
    int rc = inflate(&z_, Z_NO_FLUSH);
    size_t n = out_.size() - z_.avail_out;
    total_out_ += n;
    if (rc == Z_STREAM_END) {
      member_done_ = true;
    } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && n == 0)) {
      return Fail(ErrorCode::kInvalidArgument, "gzip", "body",
                  std::string("not a valid gzip stream: ") + (z_.msg ? z_.msg : "inflate failed"));
    }
    if (n) return std::string_view(out_.data(), n);
    if (rc == Z_BUF_ERROR) return std::string_view();
  }
}

Result<void> GzipInflater::Finish() const {
  if (!started_) return Fail(ErrorCode::kInvalidArgument, "gzip", "body", "an empty gzip body");
  if (!member_done_) {
    return Fail(ErrorCode::kInvalidArgument, "gzip", "body", "the gzip stream is truncated");
  }
  return Ok();
}

}  // namespace wb::daemon::e2b
