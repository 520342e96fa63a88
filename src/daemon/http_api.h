// The HTTP API's pure parts: request parsing, response encoding, status codes,
// listen addresses and bearer tokens. The server (http_server.cc) applies them
// on the daemon's Asio loop. See docs/openapi.yaml.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "daemon/metrics.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

// POST /v1/run's body: the socket's run fields (docs/protocol.md) without
// "op", plus `env` as an object and `stdin_base64`. Errors read like the
// socket's: "bad request(env): ...".
[[nodiscard]] Result<proto::RunRequest> ParseHttpRunRequest(std::string_view body);

// {"stdout":"<base64>","stderr":"<base64>","exit_code":N,"error":null,...}
std::string HttpRunResponseJson(const proto::RunResponse& r);
// {"stream":"stdout","data":"<base64>"}
std::string HttpChunkJson(bool is_stderr, std::string_view data);
// {"error":"...","kind":"busy"}; kind is RunErrorKindName or an HTTP-only kind
// ("unauthorized", "forbidden", "not_found", "method_not_allowed", "too_large",
// "unsupported_media_type", "too_many_connections").
std::string HttpErrorJson(const std::string& message, std::string_view kind);
// 400, 404, 429, 503, 500 ... (200 for kNone).
unsigned HttpStatusFor(RunErrorKind kind);

std::string Base64Encode(std::string_view data);
[[nodiscard]] Result<std::string> Base64Decode(std::string_view text, const char* field);

struct ListenAddress {
  std::string host;  // numeric IPv4/IPv6, as given ("localhost" becomes 127.0.0.1)
  uint16_t port = 0;
  bool loopback = false;
};
// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080", "localhost:8080".
[[nodiscard]] Result<ListenAddress> ParseListenAddress(std::string_view text);

// The token of "Bearer TOKEN" (scheme case-insensitive), or nullopt.
std::optional<std::string_view> BearerToken(std::string_view authorization);
// Compares in time that depends only on the lengths, not on where they differ.
bool TokenEquals(std::string_view given, std::string_view expected);
// Reads a token file: one line, not empty, not readable by group or others.
[[nodiscard]] Result<std::string> ReadTokenFile(const std::string& path);

// The token file the daemon uses when --http-token-file is not given.
std::string DefaultTokenPath(const std::string& state_dir);  // STATE/http-token
// ReadTokenFile(path), or, when path does not exist, a new token (32 random
// bytes as hex) written there with mode 0600. *created says which.
[[nodiscard]] Result<std::string> LoadOrCreateTokenFile(const std::string& path, bool* created);

// The browser defences, checked before the token on every endpoint but
// /healthz (docs/security.md). The API is for programs, never for web pages:
// - a request with an Origin header (browsers send one on every cross-site
//   and every POST request) is refused;
// - on a loopback listen address, the Host header must name loopback
//   (localhost, 127.0.0.0/8, [::1], with or without a port): a page that
//   rebinds its own DNS name to 127.0.0.1 sends that name.
// Returns why the request is refused (403), or nullopt.
std::optional<std::string> BrowserRequestRefusal(std::optional<std::string_view> origin,
                                                 std::optional<std::string_view> host,
                                                 bool loopback_listen);
// Whether a Content-Type value is application/json (case-insensitive,
// parameters such as "; charset=utf-8" allowed). POST /v1/run requires it: a
// page can send text/plain cross-site without a CORS preflight, never JSON.
bool IsJsonContentType(std::string_view value);

}  // namespace wb::daemon
