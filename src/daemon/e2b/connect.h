// The Connect protocol (connectrpc.com/docs/protocol), as the E2B SDKs speak
// it to envd: the JSON codec over HTTP/1.1, unary calls and server streams.
// No gRPC, no HTTP/2, no compression (docs/e2b.md).
//
// Unary: POST /pkg.Service/Method, Content-Type application/json; the answer
// is 200 with the response message's JSON, or an error status with
// {"code":"not_found","message":"..."}.
// Server stream: Content-Type application/connect+json; the request body is
// one envelope (flags byte, 4-byte big-endian length, JSON); the answer is 200
// with a chunked body of envelopes, the last one flagged 0x02 (end of
// stream: {} or {"error":{...}}).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

// --- pure parts -------------------------------------------------------------------

// The Connect code of a warmbox error code: not_found, invalid_argument
// (bad_request), permission_denied, already_exists, failed_precondition,
// resource_exhausted (busy, resource_exhausted), unavailable,
// deadline_exceeded (timeout), canceled, internal; anything else internal.
const char* ConnectCode(ErrorCode c);
// The HTTP status the Connect spec gives a code ("not_found" -> 404).
unsigned ConnectHttpStatus(std::string_view code);
// {"code":"...","message":"..."}
std::string ConnectErrorJson(std::string_view code, std::string_view message);

inline constexpr uint8_t kEnvelopeMessage = 0x00;
inline constexpr uint8_t kEnvelopeEndStream = 0x02;
// flags | length (4 bytes, big-endian) | payload
std::string Envelope(uint8_t flags, std::string_view payload);
// The one message of a server-stream request's body; invalid_argument when
// the body is not exactly one uncompressed envelope.
[[nodiscard]] Result<std::string> ParseRequestEnvelope(std::string_view body);
// The end-of-stream message: {} or {"error":{"code":..,"message":..}}.
std::string EndStreamJson(std::optional<std::string_view> code = std::nullopt,
                          std::string_view message = {});

// Whether a Content-Type is a Connect streaming one (application/connect+json)
// or a unary JSON one (application/json, any parameters).
bool IsConnectStreamType(std::string_view content_type);
bool IsConnectUnaryType(std::string_view content_type);

// --- on the wire ------------------------------------------------------------------

// A unary answer: 200 application/json with the message. Returns false when
// the write failed (the connection is done).
boost::asio::awaitable<bool> SendUnary(boost::beast::tcp_stream& s, unsigned version, bool keep,
                                       std::string json);
// A unary (or pre-stream) error: ConnectHttpStatus(code), the error JSON.
boost::asio::awaitable<bool> SendConnectError(boost::beast::tcp_stream& s, unsigned version,
                                              bool keep, std::string_view code,
                                              std::string_view message);
inline boost::asio::awaitable<bool> SendConnectError(boost::beast::tcp_stream& s, unsigned version,
                                                     bool keep, const Error& e) {
  co_return co_await SendConnectError(s, version, keep, ConnectCode(e.code), e.ToString());
}

// A server stream's answer: the head (200, application/connect+json,
// chunked) goes out with the first message, each message is flushed as its
// own chunk, End writes the end-of-stream envelope and the last chunk.
// Every write has a deadline (a client that stops reading cannot hold the
// daemon). After a failed write every call returns false at once.
class ConnectStream {
 public:
  ConnectStream(boost::beast::tcp_stream& s, unsigned version)
      : out_(s, version, "application/connect+json") {}
  boost::asio::awaitable<bool> Send(std::string_view json);
  boost::asio::awaitable<bool> End(std::optional<std::string_view> code = std::nullopt,
                                   std::string_view message = {});
  boost::asio::awaitable<bool> End(const Error& e) {
    co_return co_await End(std::string_view(ConnectCode(e.code)), e.ToString());
  }
  bool started() const { return out_.started(); }
  bool failed() const { return out_.failed(); }

 private:
  boost::asio::awaitable<bool> Write(std::string data, bool last);
  ChunkedResponse out_;
};

}  // namespace wb::daemon::e2b
