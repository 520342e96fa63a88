#include "daemon/e2b/connect.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

const char* ConnectCode(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kPermissionDenied:
      return "permission_denied";
    case ErrorCode::kBusy:
    case ErrorCode::kResourceExhausted:
      return "resource_exhausted";
    case ErrorCode::kDraining:
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kCancelled:
      return "canceled";
    case ErrorCode::kFailedPrecondition:
      return "failed_precondition";
    case ErrorCode::kInternal:
      break;
  }
  return "internal";
}

unsigned ConnectHttpStatus(std::string_view code) {
  struct Row {
    std::string_view code;
    unsigned status;
  };
  // The Connect protocol's table (HTTP to error code mapping).
  static constexpr Row kRows[] = {
      {"canceled", 499},
      {"unknown", 500},
      {"invalid_argument", 400},
      {"deadline_exceeded", 504},
      {"not_found", 404},
      {"already_exists", 409},
      {"permission_denied", 403},
      {"resource_exhausted", 429},
      {"failed_precondition", 400},
      {"aborted", 409},
      {"out_of_range", 400},
      {"unimplemented", 501},
      {"internal", 500},
      {"unavailable", 503},
      {"data_loss", 500},
      {"unauthenticated", 401},
  };
  for (const auto& r : kRows) {
    if (r.code == code) return r.status;
  }
  return 500;
}

std::string ConnectErrorJson(std::string_view code, std::string_view message) {
  nlohmann::json j = {{"code", code}, {"message", message}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string Envelope(uint8_t flags, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  out.push_back(static_cast<char>(flags));
  const auto n = static_cast<uint32_t>(payload.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(payload);
  return out;
}

Result<std::string> ParseRequestEnvelope(std::string_view body) {
  auto bad = [](std::string detail) {
    return Error{.call = "connect envelope",
                 .detail = std::move(detail),
                 .code = ErrorCode::kInvalidArgument};
  };
  if (body.size() < 5)
    return bad("the body is " + std::to_string(body.size()) + " bytes: no envelope");
  const auto flags = static_cast<uint8_t>(body[0]);
  if (flags != kEnvelopeMessage)
    return bad("flags " + std::to_string(flags) + ": only uncompressed messages");
  uint32_t n = 0;
  for (int i = 1; i <= 4; ++i) n = (n << 8) | static_cast<uint8_t>(body[i]);
  if (body.size() - 5 != n) {
    return bad("the envelope says " + std::to_string(n) + " bytes, the body has " +
               std::to_string(body.size() - 5));
  }
  return std::string(body.substr(5));
}

std::string EndStreamJson(std::optional<std::string_view> code, std::string_view message) {
  if (!code) return "{}";
  nlohmann::json j = {{"error", {{"code", *code}, {"message", message}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {
std::string_view MediaType(std::string_view content_type) {
  return Trim(content_type.substr(0, content_type.find(';')));
}
}  // namespace

bool IsConnectStreamType(std::string_view content_type) {
  return AsciiLower(MediaType(content_type)) == "application/connect+json";
}

bool IsConnectUnaryType(std::string_view content_type) {
  return AsciiLower(MediaType(content_type)) == "application/json";
}

asio::awaitable<bool> SendUnary(beast::tcp_stream& s, unsigned version, bool keep,
                                std::string json) {
  co_await SendStringResponse(s, version, false, http::status::ok, std::move(json),
                              "application/json", keep);
  co_return s.socket().is_open();
}

asio::awaitable<bool> SendConnectError(beast::tcp_stream& s, unsigned version, bool keep,
                                       std::string_view code, std::string_view message) {
  co_await SendStringResponse(s, version, false, static_cast<http::status>(ConnectHttpStatus(code)),
                              ConnectErrorJson(code, message), "application/json", keep);
  co_return s.socket().is_open();
}

// (Every argument is named before the co_await: GCC 12 miscompiles
// temporaries in co_await expressions.)
asio::awaitable<bool> ConnectStream::Write(std::string data, bool last) {
  const std::string_view piece = data;
  bool ok = co_await out_.Write(piece);
  if (ok && last) ok = co_await out_.Finish();
  co_return ok;
}

asio::awaitable<bool> ConnectStream::Send(std::string_view json) {
  std::string envelope = Envelope(kEnvelopeMessage, json);
  bool ok = co_await Write(std::move(envelope), false);
  co_return ok;
}

asio::awaitable<bool> ConnectStream::End(std::optional<std::string_view> code,
                                         std::string_view message) {
  std::string envelope = Envelope(kEnvelopeEndStream, EndStreamJson(code, message));
  bool ok = co_await Write(std::move(envelope), true);
  co_return ok;
}

}  // namespace wb::daemon::e2b
