#include "daemon/http_api.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/json.h"
#include "base/strings.h"

namespace wb::daemon {

using nlohmann::json;
namespace b64 = boost::beast::detail::base64;

namespace {
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
}  // namespace

std::string Base64Encode(std::string_view data) {
  std::string out(b64::encoded_size(data.size()), '\0');
  out.resize(b64::encode(out.data(), data.data(), data.size()));
  return out;
}

Result<std::string> Base64Decode(std::string_view text, const char* field) {
  // Padded input only: Beast's decoded_size (n/4*3) is exact for it, and
  // unpadded input would be written past that size (the fuzzer found this).
  if (text.size() % 4 != 0)
    return Fail(ErrorCode::kInvalidArgument, "bad request", field,
                "not valid base64 (standard alphabet, padded)");
  std::string out(b64::decoded_size(text.size()), '\0');
  // Beast's decoder stops at the first byte outside the alphabet; padding
  // ends the input. Anything left unread means the input was not base64.
  auto [written, read] = b64::decode(out.data(), text.data(), text.size());
  size_t rest = read;
  while (rest < text.size() && text[rest] == '=') ++rest;
  if (rest != text.size() || rest - read > 2) {
    return Fail(ErrorCode::kInvalidArgument, "bad request", field,
                "not valid base64 (standard alphabet, padded)");
  }
  out.resize(written);
  return out;
}

Result<proto::RunRequest> ParseHttpRunRequest(std::string_view body) {
  auto parsed = ParseJsonBounded(body, "body");
  if (!parsed.ok()) {
    const std::string& why = parsed.error().detail;
    return Fail(ErrorCode::kInvalidArgument, "bad request", "body",
                why == "invalid JSON" ? "not valid JSON" : why);
  }
  json j = std::move(*parsed);
  if (!j.is_object())
    return Fail(ErrorCode::kInvalidArgument, "bad request", "body", "expected a JSON object");
  // Strict, unlike the socket (whose upstream clients may send fields of
  // their own): a misspelt "timeoutms" must not silently run without a timeout.
  static const char* const kFields[] = {"cmd",    "image",        "env",        "workdir", "user",
                                        "stdin",  "stdin_base64", "timeout_ms", "memory",  "pids",
                                        "cpus",   "output_cap",   "nofile",     "driver",  "op",
                                        "stream", "network"};
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* f : kFields) known |= key == f;
    if (!known) return Fail(ErrorCode::kInvalidArgument, "bad request", key, "unknown field");
  }
  if (j.contains("op"))
    return Fail(ErrorCode::kInvalidArgument, "bad request", "op",
                "not used over HTTP: POST /v1/run runs a command");
  if (j.contains("stream")) {
    return Fail(ErrorCode::kInvalidArgument, "bad request", "stream",
                "not used over HTTP: send 'Accept: application/x-ndjson' to stream");
  }
  // env may be an object: {"K":"V"} becomes ["K=V"] (sorted by key, as JSON objects are here).
  if (auto it = j.find("env"); it != j.end() && it->is_object()) {
    json arr = json::array();
    for (const auto& [k, v] : it->items()) {
      if (k.empty() || k.find('=') != std::string::npos)
        return Fail(ErrorCode::kInvalidArgument, "bad request", "env", "bad name '" + k + "'");
      if (!v.is_string())
        return Fail(ErrorCode::kInvalidArgument, "bad request", "env",
                    "the value of " + k + " must be a string");
      arr.push_back(k + "=" + v.get<std::string>());
    }
    *it = std::move(arr);
  }
  // stdin is taken out before the rest goes through the socket's parser:
  // re-encoding megabytes of input as JSON would cost more than the run.
  std::optional<std::string> stdin_data;
  if (auto it = j.find("stdin_base64"); it != j.end()) {
    if (j.contains("stdin"))
      return Fail(ErrorCode::kInvalidArgument, "bad request", "stdin_base64",
                  "give stdin or stdin_base64, not both");
    if (!it->is_string())
      return Fail(ErrorCode::kInvalidArgument, "bad request", "stdin_base64",
                  "expected a base64 string");
    stdin_data = WB_TRY(Base64Decode(it->get_ref<const std::string&>(), "stdin_base64"));
    j.erase(it);
  } else if (auto in = j.find("stdin"); in != j.end()) {
    if (!in->is_null() && !in->is_string()) {
      return Fail(ErrorCode::kInvalidArgument, "bad request", "stdin",
                  "expected a string (or use stdin_base64 for bytes)");
    }
    if (in->is_string()) stdin_data = std::move(in->get_ref<std::string&>());
    j.erase(in);
  }
  j["op"] = "run";
  auto req = WB_TRY(proto::ParsePoolRequest(Dump(j)));
  req.run.stdin_data = std::move(stdin_data);
  return std::move(req.run);
}

std::string HttpRunResponseJson(const proto::RunResponse& r) {
  // Field order as on the socket; outputs as base64 strings.
  std::string out = "{\"stdout\":\"" + Base64Encode(r.stdout_data) + "\",\"stderr\":\"" +
                    Base64Encode(r.stderr_data) +
                    "\",\"exit_code\":" + std::to_string(r.exit_code) +
                    ",\"error\":" + (r.error ? Dump(json(*r.error)) : "null");
  auto flag = [&](const char* k, bool v) {
    out += std::string(",\"") + k + "\":" + (v ? "true" : "false");
  };
  flag("timed_out", r.timed_out);
  flag("stdout_truncated", r.stdout_truncated);
  flag("stderr_truncated", r.stderr_truncated);
  flag("oom_killed", r.oom_killed);
  out += ",\"sandbox\":" + Dump(json(r.sandbox));
  if (r.error && !r.kind.empty()) out += ",\"kind\":" + Dump(json(r.kind));
  out += "}";
  return out;
}

std::string HttpChunkJson(bool is_stderr, std::string_view data) {
  return std::string("{\"stream\":\"") + (is_stderr ? "stderr" : "stdout") + "\",\"data\":\"" +
         Base64Encode(data) + "\"}";
}

std::string HttpErrorJson(const std::string& message, std::string_view kind) {
  return Dump(json{{"error", message}, {"kind", kind}});
}

unsigned HttpStatusFor(RunErrorKind kind) {
  switch (kind) {
    case RunErrorKind::kNone:
      return 200;
    case RunErrorKind::kBadRequest:
      return 400;
    case RunErrorKind::kNoImage:
      return 404;
    case RunErrorKind::kBusy:
      return 429;
    case RunErrorKind::kDraining:
      return 503;
    case RunErrorKind::kClientGone:
      return 499;  // nginx's "client closed request"; never sent
    case RunErrorKind::kInternal:
      return 500;
  }
  return 500;
}

namespace {

// Whether a numeric IPv4 or IPv6 address is a loopback one (127.0.0.0/8,
// ::1); nullopt when text is not a numeric address.
std::optional<bool> IsLoopbackLiteral(const std::string& text) {
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6) != 0;
  return std::nullopt;
}

}  // namespace

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  ListenAddress a;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Fail("--http", std::string(text), "expected [IPV6]:PORT");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return Fail("--http", std::string(text), "expected ADDR:PORT");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  auto p = ParseUint(port, "--http port");
  if (!p.ok() || *p == 0 || *p > 65535)
    return Fail("--http", std::string(text), "port must be 1-65535");
  a.port = static_cast<uint16_t>(*p);
  a.host = host == "localhost" ? "127.0.0.1" : std::string(host);
  auto loopback = IsLoopbackLiteral(a.host);
  if (!loopback) {
    return Fail("--http", std::string(text),
                "the address must be a numeric IPv4 or IPv6 address, or localhost");
  }
  a.loopback = *loopback;
  return a;
}

std::optional<std::string_view> BearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i])
      return std::nullopt;
  }
  std::string_view t = Trim(authorization.substr(kScheme.size()));
  if (t.empty()) return std::nullopt;
  return t;
}

bool TokenEquals(std::string_view given, std::string_view expected) {
  // Every byte of the expected token is looked at whatever the input, and
  // the difference is accumulated without branching, so the time says
  // nothing about how much of a guess was right. (A short static helper
  // instead of OpenSSL's CRYPTO_memcmp: the CLI is linked statically.)
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = static_cast<unsigned char>(diff | (g ^ static_cast<unsigned char>(expected[i])));
  }
  return diff == 0;
}

Result<std::string> ReadTokenFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Errno("stat", path);
  if (st.st_mode & 077) {
    return Fail("--http-token-file", path,
                "is readable or writable by group or others; chmod 600 it");
  }
  std::string t(Trim(WB_TRY(ReadFile(path))));
  if (t.empty()) return Fail("--http-token-file", path, "is empty");
  if (t.find_first_of(" \t\r\n") != std::string::npos) {
    return Fail("--http-token-file", path, "must hold one token on one line");
  }
  if (t.size() < 16)
    return Fail("--http-token-file", path, "token too short (at least 16 characters)");
  return t;
}

std::string DefaultTokenPath(const std::string& state_dir) { return state_dir + "/http-token"; }

Result<std::string> LoadOrCreateTokenFile(const std::string& path, bool* created) {
  *created = false;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) return ReadTokenFile(path);
  if (errno != ENOENT) return Errno("stat", path);
  const std::string token = WB_TRY(RandomHex(32));
  // Written under a temporary name created 0600 (never readable by others,
  // not even for a moment), then renamed into place.
  WB_RETURN_IF_ERROR(WriteFileAtomic(path, token + "\n", 0600));
  *created = true;
  return token;
}

namespace {

// "localhost", "127.1.2.3", "[::1]", each with an optional ":PORT".
bool IsLoopbackHost(std::string_view host) {
  std::string h = AsciiLower(Trim(host));
  if (!h.empty() && h.front() == '[') {
    size_t close = h.find(']');
    if (close == std::string::npos) return false;
    std::string rest = h.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !ParseUint(rest.substr(1), "port").ok()))
      return false;
    // Brackets hold an IPv6 address only.
    const std::string ip = h.substr(1, close - 1);
    return ip.find(':') != std::string::npos && IsLoopbackLiteral(ip).value_or(false);
  }
  if (size_t colon = h.rfind(':'); colon != std::string::npos) {
    if (!ParseUint(h.substr(colon + 1), "port").ok()) return false;
    h.resize(colon);
  }
  if (h == "localhost" || h == "localhost.") return true;
  // An IPv6 address outside brackets would have lost its last group as the
  // "port" above: only IPv4 here.
  return h.find(':') == std::string::npos && IsLoopbackLiteral(h).value_or(false);
}

}  // namespace

std::optional<std::string> BrowserRequestRefusal(std::optional<std::string_view> origin,
                                                 std::optional<std::string_view> host,
                                                 bool loopback_listen) {
  if (origin) {
    return "cross-origin request refused (Origin: " + std::string(*origin) +
           "): the API does not serve web pages";
  }
  if (loopback_listen && host && !IsLoopbackHost(*host)) {
    return "unexpected Host header '" + std::string(*host) +
           "': a loopback API answers only to localhost, 127.0.0.1 or [::1]";
  }
  return std::nullopt;
}

bool IsJsonContentType(std::string_view value) {
  std::string_view type = value.substr(0, value.find(';'));
  return AsciiLower(Trim(type)) == "application/json";
}

}  // namespace wb::daemon
