#include "daemon/image_puller.h"

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "base/log.h"
#include "image/debian_template.h"

namespace wb::daemon {

namespace asio = boost::asio;

struct ImagePuller::Pending {
  explicit Pending(asio::io_context& io) : done(io, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;  // cancelled when the result is in
  std::optional<Result<void>> result;
};

std::string ImagePuller::HowMissing(const std::string& image) {
  return FindKnownTemplate(image) ? "building the template from Debian packages" : "pulling it";
}

ImageToolCall ImagePuller::CallFor(ImageToolCall base, const std::string& image) {
  // A template's packages come from the helper's own table.
  base.args = {FindKnownTemplate(image) ? "build-debian" : "pull"};
  base.operands = {image};
  return base;
}

asio::awaitable<Result<void>> ImagePuller::Pull(const std::string& image) {
  std::shared_ptr<Pending> p;
  if (auto it = pending_.find(image); it != pending_.end()) {
    p = it->second;
  } else {
    p = std::make_shared<Pending>(io_);
    pending_.emplace(image, p);
    ImageToolCall call = CallFor(base_, image);
    spdlog::info("{} image {}", call.args[0] == "pull" ? "pulling" : "building template", image);
    asio::post(threads_, [this, p, call, image] {
      auto r = RunImageTool(call);
      asio::post(io_, [this, p, r = std::move(r), image]() mutable {
        if (r.ok()) {
          spdlog::info("image {} is ready", image);
        } else {
          spdlog::warn("{} image {} failed: {}", HowMissing(image), image, r.error().ToString());
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
