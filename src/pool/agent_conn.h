// An asynchronous connection to a sandbox's agent (the daemon's side of
// proto/agent_proto.h), on the daemon's Asio event loop.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "proto/agent_proto.h"
#include "sandbox/driver.h"

namespace wb::pool {

namespace asio = boost::asio;

class AgentConn {
 public:
  // Chunks of output as they arrive; awaited, so a slow client slows the read.
  using ChunkFn = std::function<asio::awaitable<void>(bool is_stderr, std::string data)>;

  explicit AgentConn(asio::any_io_executor ex) : sock_(ex) {}

  [[nodiscard]] static asio::awaitable<Result<std::unique_ptr<AgentConn>>> Connect(
      asio::any_io_executor ex, const AgentEndpoint& ep);

  // Runs req; streams output to on_chunk; returns the exit. stdin_data, when
  // set, is written concurrently with reading the output (no deadlock at any
  // size). The daemon keeps its own deadline over the agent's timeout.
  //
  // health_check: a heartbeat goes in the same write, ahead of the request.
  // The agent handles frames in order, so its answer arrives before the
  // command starts; if it does not come within the timeout, *unhealthy is set
  // and the command has not run: the caller may use another sandbox. This is
  // the health check of an idle sandbox without a round trip of its own.
  [[nodiscard]] asio::awaitable<Result<proto::ExecExit>> Exec(
      const proto::ExecRequest& req, const std::optional<std::string>& stdin_data, ChunkFn on_chunk,
      std::optional<std::chrono::milliseconds> health_check = std::nullopt,
      bool* unhealthy = nullptr);

  // Aborts whatever is pending; the agent kills a running command on hang-up
  // (not a kept process of a live sandbox: docs/protocol.md).
  void Close();

  // Frame by frame, for the live sandboxes' relay (daemon/live_service.h).
  [[nodiscard]] asio::awaitable<Result<proto::Frame>> ReadFrame();
  [[nodiscard]] asio::awaitable<Result<void>> Send(proto::FrameType type, std::string_view payload);
  asio::local::stream_protocol::socket& socket() { return sock_; }

 private:
  asio::local::stream_protocol::socket sock_;
  std::string path_;
};

}  // namespace wb::pool
