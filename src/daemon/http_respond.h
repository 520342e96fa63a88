// One whole HTTP response with a string body, the way every route of the
// daemon's HTTP API answers (http_server.cc, http_live.cc).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wb::daemon {

// A client that does not read its response cannot hold the connection.
inline constexpr std::chrono::seconds kWriteTimeout{30};

using HttpHeaders = std::vector<std::pair<boost::beast::http::field, std::string>>;

// Content-Type (none on 204), Cache-Control: no-store, extra, keep-alive,
// Content-Length; head: the headers only. Write errors end the exchange
// (the connection's next read fails).
boost::asio::awaitable<void> SendStringResponse(boost::beast::tcp_stream& s, unsigned version,
                                                bool head, boost::beast::http::status status,
                                                std::string body, const char* type, bool keep,
                                                const HttpHeaders& extra = {});

// A 200 response's head with a body to follow: Content-Type type,
// Cache-Control: no-store, keep-alive, then Content-Length length or, when
// length is nullopt, chunked. With kWriteTimeout; false on a write error.
boost::asio::awaitable<bool> SendHead(boost::beast::tcp_stream& s, unsigned version,
                                      const char* type, bool keep, std::optional<uint64_t> length);

// Closes after a response sent without reading the request's body. A
// close(2) with unread bytes makes the kernel send a reset, which can destroy
// the response before the client reads it: stop sending, then read and drop
// what the client still sends (into a small buffer, never kept) until it
// closes too, for at most 16 MiB or 2 s. (Loopback sockets can hold
// megabytes in flight when the client notices the answer.)
boost::asio::awaitable<void> LingeringClose(boost::beast::tcp_stream& s);

// Waits for ever (until cancelled by the || that runs it).
boost::asio::awaitable<void> Forever();
// Completes when the HTTP client hangs up (EOF or an error) while a
// response streams; waits on the socket, never reads it. A pipelined request
// (readable, not EOF) is left for later: then it waits until cancelled.
boost::asio::awaitable<void> ClientGone(boost::beast::tcp_stream& s);

// A 200 chunked response whose head (Content-Type type, Cache-Control:
// no-store) goes out with the first piece. Every write has kWriteTimeout;
// after a failed write every call returns false at once.
class ChunkedResponse {
 public:
  ChunkedResponse(boost::beast::tcp_stream& s, unsigned version, const char* type)
      : s_(s), version_(version), type_(type) {}
  // A piece (the head first, when not yet sent); an empty piece sends only the head.
  boost::asio::awaitable<bool> Write(std::string_view data);
  boost::asio::awaitable<bool> Line(std::string line) {
    line += '\n';
    co_return co_await Write(line);
  }
  // The last chunk (and the head, for an empty body).
  boost::asio::awaitable<bool> Finish();
  bool started() const { return started_; }
  bool failed() const { return failed_; }

 private:
  boost::beast::tcp_stream& s_;
  unsigned version_;
  const char* type_;
  bool started_ = false;
  bool failed_ = false;
};

}  // namespace wb::daemon
