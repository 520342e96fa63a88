// The HTTP API (Boost.Beast on the daemon's own Asio loop): POST /v1/run,
// GET /v1/pools, GET /healthz, GET /metrics, and the live sandboxes under
// /v1/sandboxes (http_live.h). See docs/openapi.yaml.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "base/error.h"
#include "daemon/http_api.h"
#include "daemon/live_service.h"
#include "daemon/run_service.h"

namespace wb::daemon {

struct HttpOptions {
  ListenAddress addr;
  std::string token;  // the bearer token (never empty: the daemon generates one)
  std::chrono::milliseconds request_timeout{10000};  // to receive a request's head and body
  // Connections open at once; one more is answered 503 and closed. With 16
  // KiB of headers and nothing read before the token, this bounds what
  // unauthenticated clients can make the daemon hold.
  size_t max_connections = 256;
  int listen_fd = -1;  // an inherited listening socket (systemd), instead of binding addr
  // An E2B create's network when it says nothing (docs/e2b.md, "Network").
  NetworkMode e2b_default_network = NetworkMode::kNone;
};

class HttpServer {
 public:
  // live: the live sandboxes' routes (/v1/sandboxes...); none: they answer
  // 409 failed_precondition.
  HttpServer(boost::asio::io_context& io, RunService& service, LiveService* live, HttpOptions opts);
  ~HttpServer();
  // Binds and listens (or adopts opts.listen_fd).
  [[nodiscard]] Result<void> Open();
  // Accepts connections until Close.
  void Start();
  void Close();
  std::string local_address() const;  // "127.0.0.1:8080"
  uint64_t requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wb::daemon
