// One whole HTTP response with a string body, the way every route of the
// daemon's HTTP API answers (http_server.cc, http_live.cc).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <string>
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

}  // namespace wb::daemon
