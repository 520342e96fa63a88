// The daemon's pulls of missing images: one pull per image however many
// runs ask for it at once (they all wait for the same one), run by the
// warmbox-image helper on a thread of its own so the event loop never blocks.
// A failed pull is not remembered: the next request tries again. A known
// template (image/debian_template.h: "base") is built from Debian packages
// instead (warmbox-image build-debian, 20-60 s), the same way.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <string>

#include "base/error.h"
#include "image/image_tool.h"

namespace wb::daemon {

class ImagePuller {
 public:
  // base: the helper, state dir and uid base (args are filled per pull).
  ImagePuller(boost::asio::io_context& io, ImageToolCall base) : io_(io), base_(std::move(base)) {}
  ~ImagePuller() { threads_.join(); }

  // Resolves when image has been pulled or built (or that failed). Runs on io.
  boost::asio::awaitable<Result<void>> Pull(const std::string& image);
  // How Pull gets image, for messages: "pulling it" or "building the
  // template from Debian packages".
  static std::string HowMissing(const std::string& image);
  // The helper's call that gets image (pull, or build-debian for a
  // template), from base (the helper, state dir and uid base).
  static ImageToolCall CallFor(ImageToolCall base, const std::string& image);
  // Waits for pulls in flight (shutdown).
  void Join() { threads_.join(); }

 private:
  struct Pending;
  boost::asio::io_context& io_;
  ImageToolCall base_;
  boost::asio::thread_pool threads_{2};
  std::map<std::string, std::shared_ptr<Pending>> pending_;
};

}  // namespace wb::daemon
