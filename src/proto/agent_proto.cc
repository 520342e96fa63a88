#include "proto/agent_proto.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace wb::proto {

using nlohmann::json;

bool IsKnownFrameType(char c) {
  switch (c) {
    case 'H':
    case 'h':
    case 'S':
    case 'A':
    case 'W':
    case 'K':
    case 'k':
    case 'P':
    case 'p':
    case 'M':
    case 'm':
    case 'L':
    case 'l':
    case 'x':
    case 'V':
    case 'e':
    case 'E':
    case 'I':
    case 'C':
    case 'O':
    case 'R':
    case 'X':
    case 'F':
    case 'D':
    case 'd':
      return true;
  }
  return false;
}

void AppendFrame(std::string& out, FrameType type, std::string_view payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  char hdr[kHeaderSize] = {static_cast<char>(type), static_cast<char>(n >> 24),
                           static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                           static_cast<char>(n)};
  out.append(hdr, kHeaderSize);
  out.append(payload);
}

std::string EncodeFrame(FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  AppendFrame(out, type, payload);
  return out;
}

Result<void> FrameDecoder::Feed(std::string_view bytes) {
  if (failed_) return *failed_;
  buf_.append(bytes);
  auto r = Validate();
  if (!r.ok()) failed_ = r.error();
  return r;
}

Result<void> FrameDecoder::Validate() {
  for (;;) {
    size_t avail = buf_.size() - pos_;
    if (avail < kHeaderSize) break;
    const unsigned char* h = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    if (!IsKnownFrameType(static_cast<char>(h[0]))) {
      return Fail("decode frame", "type " + std::to_string(h[0]), "unknown frame type");
    }
    uint32_t n = (uint32_t{h[1]} << 24) | (uint32_t{h[2]} << 16) | (uint32_t{h[3]} << 8) | h[4];
    if (n > kMaxFrame) {
      return Fail("decode frame", std::to_string(n) + " bytes",
                  "frame exceeds the " + std::to_string(kMaxFrame) + "-byte limit");
    }
    if (avail < kHeaderSize + n) break;
    ready_.push_back(Frame{static_cast<FrameType>(h[0]), buf_.substr(pos_ + kHeaderSize, n)});
    pos_ += kHeaderSize + n;
  }
  // Compact once the consumed prefix dominates, keeping Feed amortised O(n).
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return Ok();
}

std::optional<Frame> FrameDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

namespace {

Result<json> ParseObject(std::string_view text, const char* what) {
  auto parsed = ParseJsonBounded(text, what);
  if (!parsed.ok()) {
    return Fail(ErrorCode::kInvalidArgument, "parse " + std::string(what), "",
                parsed.error().detail);
  }
  json j = std::move(*parsed);
  if (!j.is_object()) return Fail("parse " + std::string(what), "", "expected a JSON object");
  return j;
}

Result<std::vector<std::string>> StringList(const json& j, const char* key, const char* what) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array())
    return Fail("parse " + std::string(what), key, "expected an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string())
      return Fail("parse " + std::string(what), key, "expected an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> String(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Fail("parse " + std::string(what), key, "expected a string");
  return it->get<std::string>();
}

Result<uint64_t> Uint(const json& j, const char* key, const char* what, uint64_t dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number_unsigned()) {
    return Fail("parse " + std::string(what), key, "expected a non-negative integer");
  }
  return it->get<uint64_t>();
}

Result<bool> Bool(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Fail("parse " + std::string(what), key, "expected a boolean");
  return it->get<bool>();
}

Result<int> Int(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return 0;
  if (!it->is_number_integer())
    return Fail("parse " + std::string(what), key, "expected an integer");
  int64_t v = it->get<int64_t>();
  if (v < INT32_MIN || v > INT32_MAX)
    return Fail("parse " + std::string(what), key, "out of range");
  return static_cast<int>(v);
}

}  // namespace

std::string ToJson(const ExecRequest& r) {
  json j = {{"argv", r.argv},
            {"env", r.env},
            {"cwd", r.cwd},
            {"user", r.user},
            {"timeout_ms", r.timeout_ms},
            {"output_cap", r.output_cap},
            {"stdin", r.stdin},
            {"nofile", r.nofile}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ToJson(const ExecExit& e) {
  json j = {{"exit_code", e.exit_code},
            {"signal", e.signal},
            {"timed_out", e.timed_out},
            {"stdout_truncated", e.stdout_truncated},
            {"stderr_truncated", e.stderr_truncated},
            {"error", e.error},
            {"oom_killed", e.oom_killed}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ExecRequest> ParseExecRequest(std::string_view text) {
  const char* what = "exec request";
  json j = WB_TRY(ParseObject(text, what));
  ExecRequest r;
  r.argv = WB_TRY(StringList(j, "argv", what));
  if (r.argv.empty()) return Fail("parse exec request", "argv", "empty command");
  for (const auto& a : r.argv) {
    if (a.find('\0') != std::string::npos) return Fail("parse exec request", "argv", "NUL byte");
  }
  r.env = WB_TRY(StringList(j, "env", what));
  for (const auto& e : r.env) {
    size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
      return Fail("parse exec request", "env " + e, "expected KEY=VALUE");
    }
  }
  r.cwd = WB_TRY(String(j, "cwd", what));
  r.user = WB_TRY(String(j, "user", what));
  r.timeout_ms = WB_TRY(Uint(j, "timeout_ms", what, 0));
  r.output_cap = WB_TRY(Uint(j, "output_cap", what, kDefaultOutputCap));
  r.stdin = WB_TRY(Bool(j, "stdin", what));
  r.nofile = WB_TRY(Uint(j, "nofile", what, 0));
  return r;
}

Result<ExecExit> ParseExecExit(std::string_view text) {
  const char* what = "exec exit";
  json j = WB_TRY(ParseObject(text, what));
  ExecExit e;
  e.exit_code = WB_TRY(Int(j, "exit_code", what));
  e.signal = WB_TRY(Int(j, "signal", what));
  e.timed_out = WB_TRY(Bool(j, "timed_out", what));
  e.stdout_truncated = WB_TRY(Bool(j, "stdout_truncated", what));
  e.stderr_truncated = WB_TRY(Bool(j, "stderr_truncated", what));
  e.error = WB_TRY(String(j, "error", what));
  e.oom_killed = WB_TRY(Bool(j, "oom_killed", what));
  return e;
}

}  // namespace wb::proto
