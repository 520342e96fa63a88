// Published ports (`sandbox create -p [HOSTADDR:]HOSTPORT:PORT`,
// docs/network.md): the daemon listens on HOSTADDR:HOSTPORT and relays each
// accepted connection through the sandbox's agent to 127.0.0.1:PORT inside
// (the agent's port tunnel, docs/protocol.md "Ports", as the E2B port proxy
// does). No network device is involved: it works for --network none and
// egress alike, and for both drivers. The listeners and every relayed
// connection close with Close() (the sandbox's kill).
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "daemon/live_service.h"
#include "sandbox/net/net_plan.h"

namespace wb::daemon {

// Host ports below this are refused: the daemon runs as root and would
// otherwise let any client of its socket take a system service's port.
inline constexpr uint16_t kFirstPublishablePort = 1024;

// Checks a create's ports before anything is made: no port below
// kFirstPublishablePort, no HOSTADDR:HOSTPORT twice (invalid_argument,
// naming the argument).
[[nodiscard]] Result<void> CheckPublishedPorts(const std::vector<PublishedPort>& ports);

class PublishedPorts {
 public:
  // Binds and listens on every port now (SO_REUSEADDR, close-on-exec), so a
  // port in use fails the create: already_exists naming HOSTADDR:HOSTPORT.
  // Nothing is accepted before Start().
  [[nodiscard]] static Result<std::unique_ptr<PublishedPorts>> Listen(
      boost::asio::io_context& io, const std::vector<PublishedPort>& ports);
  ~PublishedPorts();  // Close()
  PublishedPorts(const PublishedPorts&) = delete;
  PublishedPorts& operator=(const PublishedPorts&) = delete;

  // Accepts on every listener; each connection is relayed to the sandbox
  // `id` of live (a tunnel opened per connection; a port where nothing
  // listens in the sandbox resets the host's connection).
  void Start(LiveService& live, std::string id);
  // Closes the listeners and every relayed connection. Idempotent.
  void Close();
  const std::vector<PublishedPort>& ports() const;
  struct State;  // shared with the accept and relay coroutines

 private:
  PublishedPorts() = default;
  std::shared_ptr<State> state_;
};

}  // namespace wb::daemon
