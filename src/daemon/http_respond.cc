#include "daemon/http_respond.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>

namespace wb::daemon {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

asio::awaitable<void> SendStringResponse(boost::beast::tcp_stream& s, unsigned version, bool head,
                                         http::status status, std::string body, const char* type,
                                         bool keep, const HttpHeaders& extra) {
  http::response<http::string_body> res{status, version};
  if (status != http::status::no_content) res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  for (const auto& [f, v] : extra) res.set(f, v);
  res.keep_alive(keep);
  res.body() = std::move(body);
  res.prepare_payload();
  error_code ec;
  s.expires_after(kWriteTimeout);
  if (head) {
    http::response_serializer<http::string_body> sr{res};
    co_await http::async_write_header(s, sr, redirect_error(use_awaitable, ec));
  } else {
    co_await http::async_write(s, res, redirect_error(use_awaitable, ec));
  }
  s.expires_never();
}

asio::awaitable<bool> SendHead(boost::beast::tcp_stream& s, unsigned version, const char* type,
                               bool keep, std::optional<uint64_t> length) {
  http::response<http::empty_body> res{http::status::ok, version};
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(keep);
  if (length) {
    res.content_length(*length);
  } else {
    res.chunked(true);
  }
  http::response_serializer<http::empty_body> sr{res};
  error_code ec;
  s.expires_after(kWriteTimeout);
  co_await http::async_write_header(s, sr, redirect_error(use_awaitable, ec));
  s.expires_never();
  co_return !ec;
}

asio::awaitable<void> LingeringClose(boost::beast::tcp_stream& s) {
  error_code ec;
  s.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  std::array<char, 4096> sink;
  size_t dropped = 0;
  s.expires_after(std::chrono::seconds(2));
  while (dropped < (size_t{16} << 20)) {
    size_t n = co_await s.async_read_some(asio::buffer(sink), redirect_error(use_awaitable, ec));
    if (ec) break;
    dropped += n;
  }
  s.expires_never();
}

asio::awaitable<void> Forever() {
  asio::steady_timer t(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
  error_code ec;
  co_await t.async_wait(redirect_error(use_awaitable, ec));
}

asio::awaitable<void> ClientGone(boost::beast::tcp_stream& s) {
  error_code ec;
  co_await s.socket().async_wait(asio::ip::tcp::socket::wait_read,
                                 redirect_error(use_awaitable, ec));
  if (ec) co_return;
  // Readable: EOF (or an error) is the hang-up; bytes are a next request.
  char c;
  ssize_t n = ::recv(s.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) co_return;
  co_await Forever();
}

asio::awaitable<bool> ChunkedResponse::Write(std::string_view data) {
  if (failed_) co_return false;
  error_code ec;
  if (!started_) {
    started_ = true;
    http::response<http::empty_body> res{http::status::ok, version_};
    res.set(http::field::content_type, type_);
    res.set(http::field::cache_control, "no-store");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    s_.expires_after(kWriteTimeout);
    co_await http::async_write_header(s_, sr, asio::redirect_error(asio::use_awaitable, ec));
    s_.expires_never();
    if (ec) co_return !(failed_ = true);
  }
  if (data.empty()) co_return true;
  s_.expires_after(kWriteTimeout);
  co_await asio::async_write(s_, http::make_chunk(asio::buffer(data.data(), data.size())),
                             asio::redirect_error(asio::use_awaitable, ec));
  s_.expires_never();
  if (ec) failed_ = true;
  co_return !failed_;
}

asio::awaitable<bool> ChunkedResponse::Finish() {
  if (!co_await Write("")) co_return false;
  error_code ec;
  s_.expires_after(kWriteTimeout);
  co_await asio::async_write(s_, http::make_chunk_last(),
                             asio::redirect_error(asio::use_awaitable, ec));
  s_.expires_never();
  if (ec) failed_ = true;
  co_return !ec;
}

}  // namespace wb::daemon
