#include "daemon/image_puller.h"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "base/log.h"

namespace wb::daemon {

namespace asio = boost::asio;

struct ImagePuller::Pending {
  explicit Pending(asio::io_context& io) : done(io, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;  // cancelled when the result is in
  std::optional<Result<void>> result;
};

asio::awaitable<Result<void>> ImagePuller::Pull(const std::string& image) {
  std::shared_ptr<Pending> p;
  if (auto it = pending_.find(image); it != pending_.end()) {
    p = it->second;
  } else {
    p = std::make_shared<Pending>(io_);
    pending_.emplace(image, p);
    ImageToolCall call = base_;
    call.args = {"pull"};
    call.operands = {image};
    spdlog::info("pulling image {}", image);
    asio::post(threads_, [this, p, call, image] {
      auto r = RunImageTool(call);
      asio::post(io_, [this, p, r = std::move(r), image]() mutable {
        if (r.ok()) {
          spdlog::info("pulled image {}", image);
        } else {
          spdlog::warn("pull of image {} failed: {}", image, r.error().ToString());
        }
        p->result = std::move(r);
        p->done.cancel();
        pending_.erase(image);
      });
    });
  }
  while (!p->result) {
    boost::system::error_code ec;
    co_await p->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return *p->result;
}

}  // namespace wb::daemon
