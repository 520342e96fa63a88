// The host's end of the channels over a VM's port (proto/mux.h;
// docs/protocol.md, "Channels"; docs/architecture.md, "Live vm sandboxes").
//
// QEMU's chardev socket (agent.sock) accepts one connection at a time and
// never tells the guest where one ends, so the live operations of a vm
// sandbox cannot each connect to it. The bridge holds the one connection
// and listens on a socket of its own (live.sock); every connection accepted
// there is relayed as a channel, so callers still "connect per operation"
// exactly as to an ns sandbox's agent: a hang-up is a Z to the agent, the
// agent's close (Z) closes the connection once its bytes are written.
//
// One thread per bridge, poll(2) over the port, the listener and the
// connections: the bridge lives exactly as long as its VM (the sandbox
// object owns it), in whatever process owns the VM (the daemon, a test), and
// never blocks the daemon's event loop. Credit per channel bounds what it
// holds: at most kChannelWindow bytes per connection each way.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/fd.h"

namespace wb::vm {

class MuxBridge {
 public:
  // port: a connected stream to the agent's port (a connection to QEMU's
  // agent.sock; a socketpair in tests). Sends Q with a random nonce and
  // waits up to timeout_ms for the q that echoes it (an agent that does not
  // serve channels fails here), then listens on listen_path (mode 0600) and
  // relays from a thread of its own. resync: an earlier host may have left
  // a frame half-written in the port (a daemon taking over a live VM), so
  // the Q follows proto::kSyncPadBytes of padding; the agent's stream is
  // read in step from its q on, whatever came before it.
  [[nodiscard]] static Result<std::unique_ptr<MuxBridge>> Start(UniqueFd port,
                                                                const std::string& listen_path,
                                                                int timeout_ms,
                                                                bool resync = false);
  // Stops the thread, closes every connection and the port, removes the
  // socket file.
  ~MuxBridge();
  MuxBridge(const MuxBridge&) = delete;
  MuxBridge& operator=(const MuxBridge&) = delete;

  const std::string& path() const { return path_; }
  // False once the port has ended (QEMU gone): connections then fail.
  bool alive() const { return alive_.load(); }

 private:
  struct State;
  MuxBridge() = default;
  void Run();

  std::string path_;
  std::unique_ptr<State> st_;
  UniqueFd stop_;  // an eventfd: the destructor's wake-up
  std::atomic<bool> alive_{true};
  std::thread thread_;
};

}  // namespace wb::vm
