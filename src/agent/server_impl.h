// The agent's exec server (server.h), shared by the files that implement it:
// server.cc (the loop, connections, pool runs), live_procs.cc (kept
// processes of live sandboxes), live_files.cc (file operations and watches),
// live_ports.cc (TCP connections to the sandbox's ports).
// One thread: every member is touched by the epoll loop only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/output_ring.h"
#include "agent/server.h"
#include "agent/users.h"
#include "base/error.h"
#include "base/fd.h"
#include "proto/agent_proto.h"
#include "proto/mux.h"

namespace wb::agent {

using proto::FrameType;

inline constexpr size_t kReadChunk = 64 * 1024;
// Stop reading a command's output while this much is queued for the host:
// backpressure instead of unbounded buffering.
inline constexpr size_t kConnHighWater = 1 << 20;
// Stop reading stdin frames while this much is queued for the command.
inline constexpr size_t kStdinHighWater = 1 << 20;
// A kept process's output queued for one attached connection beyond this
// stays in the ring until the connection drains (the ring is the buffer).
inline constexpr size_t kListenerHighWater = 256 * 1024;
// A tunnel's service is read while less than this is queued for the host.
inline constexpr size_t kTunnelHighWater = 256 * 1024;
// Exited kept processes retained for P and A, and their rings' total.
inline constexpr size_t kMaxExited = 256;
inline constexpr uint64_t kExitedRingBudget = 8 << 20;

enum Kind : uint64_t {
  kListen = 1,
  kSignal,
  kConn,
  kOut,
  kErr,
  kIn,
  kTimer,
  kGrace,
  kKeptOut,  // id: the kept process's pid
  kKeptErr,
  kKeptIn,
  kKeptTimer,
  kInotify,  // id: the watching connection
  kTunnel,   // id: the connection whose TCP socket it is
};

inline uint64_t Tag(Kind k, uint64_t id) { return (uint64_t{k} << 56) | id; }

// An fd plus the epoll interest currently registered for it.
struct Watched {
  UniqueFd fd;
  uint32_t events = 0;
  bool added = false;
  // Edge-triggered: for a virtio-serial port, which polls readable (read
  // returns 0) for as long as no host is connected; level-triggered, an idle
  // agent would spin. Each host connect, disconnect and data arrival wakes
  // the port's waitqueue, so no edge that matters is lost.
  bool edge = false;
};

// A pool run's command: it lives as long as its connection.
struct Exec {
  uint64_t conn = 0;  // 0 once the connection is gone
  pid_t pid = -1;
  Watched in, out, err, timer;
  std::string stdin_buf;
  bool stdin_close = false;
  uint64_t cap = proto::kDefaultOutputCap;
  uint64_t out_n = 0, err_n = 0;
  bool out_trunc = false, err_trunc = false;
  uint64_t timeout_ms = 0;
  bool timed_out = false;
  std::string start_error;
};

// A kept process (E with keep:true): outlives every connection.
struct Kept {
  explicit Kept(uint64_t ring_bytes) : ring(ring_bytes) {}
  uint64_t seq = 0;  // start order, for P
  pid_t pid = -1;
  proto::ProcessInfo info;  // running/exit are filled in when listed
  Watched out, err, in, timer;
  OutputRing ring;
  // Attached connections and the offset of the next byte each is sent.
  std::map<uint64_t, uint64_t> listeners;
  std::string stdin_buf;
  bool stdin_close = false;
  uint64_t timeout_ms = 0;
  bool timed_out = false;
  bool reaped = false;     // waitpid returned it; the exit is final once output is drained
  bool finishing = false;  // TryFinishKept is on the stack (it pumps, pumps call it)
  int wait_status = 0;
  std::optional<proto::ExecExit> exit;  // set when reaped and drained
};

// A file operation that outlives its request frame (L read, write, watch).
struct FileXfer {
  enum Kind { kRead, kWrite, kWatch } kind = kRead;
  UniqueFd fd;  // read/write: the file
  std::string path;
  uint64_t bytes = 0;  // sent (read) or written (write)
  uint64_t max_bytes = 0;
  bool append = false;
  bool created = false;  // write: the file did not exist
  off_t orig_size = 0;   // write: its size before an append
  Credentials cred;      // the requesting user's (watch: for later adds)
  // watch
  Watched inotify;
  std::map<int, std::string> dirs;  // watch descriptor -> directory path
  bool recursive = false;
};

// A TCP connection to a port on the sandbox's loopback (T): one host
// connection's bytes, both ways (live_ports.cc).
struct Tunnel {
  uint32_t port = 0;
  Watched sock;
  bool connecting = false;    // connect(2) in progress (EPOLLOUT completes it)
  bool ipv6 = false;          // 127.0.0.1 refused: ::1 is being tried
  int refused = 0;            // the IPv4 attempt's errno, reported if ::1 fails too
  std::string to_service;     // I bytes not yet written
  bool shut_pending = false;  // C: shutdown(SHUT_WR) once to_service is written
  bool write_done = false;    // shut down, or the service stopped reading
  bool read_eof = false;      // the service's EOF came and x was sent
  uint64_t sent = 0;          // bytes sent to the host as O
};

struct Conn {
  Watched sock;
  proto::FrameDecoder dec;
  std::string out;
  size_t out_off = 0;
  bool peer_closed = false;
  bool close_after_flush = false;
  uint64_t exec = 0;
  bool port = false;  // the virtio-serial port (ServerOptions::port_fd): never closed
  // A channel of the port (port_mux.cc): a connection without an fd. Its
  // output (out) moves to the port as Y frames within credit; its input
  // waits in inq while its operation's stdin is full.
  uint32_t channel = 0;
  std::string inq;
  uint64_t credit = 0;       // bytes the agent may still send the host
  uint64_t ungranted = 0;    // bytes consumed since the last G to the host
  bool host_closed = false;  // the host sent Z (or Q): no Z back
  pid_t attached = 0;        // the kept process this connection started or attached to
  std::unique_ptr<FileXfer> file;
  std::unique_ptr<Tunnel> tunnel;
  // Whether an operation already owns this connection (one per connection).
  bool busy() const { return exec || attached || file || tunnel; }
  size_t pending() const { return out.size() - out_off; }
};

// Undoes an unfinished upload (live_files.cc).
void AbortUpload(FileXfer& x);

// ExecExit of a wait status (code, signal); the caller adds the rest.
proto::ExecExit ExitOfStatus(int wait_status);
// The message of a command's timeout, "timed out after 1.500s; ...".
std::string TimeoutMessage(uint64_t timeout_ms);

class ServerImpl : public Server {
 public:
  explicit ServerImpl(ServerOptions opts) : opts_(std::move(opts)) {}
  Result<void> Init();
  Result<int> Run() override;

 private:
  // --- server.cc ---
  void SetInterest(Watched& w, uint64_t tag, uint32_t wanted);
  void Unwatch(Watched& w);
  void UpdateInterest();

  void OnAccept();
  void OnSignal();
  void OnConnReadable(uint64_t id);
  void OnPortReadable(uint64_t id);
  void OnConnWritable(uint64_t id);
  void OnFrame(uint64_t id, Conn& c, proto::Frame f);
  void OnOutput(uint64_t exec_id, bool is_err);
  void OnStdinWritable(uint64_t exec_id);
  void OnTimer(uint64_t exec_id);
  void OnGrace();

  void StartExec(uint64_t conn_id, Conn& c, const proto::ExecRequest& req);
  void ReapAll();
  void DropIdentityCaps();
  void FinishExec(uint64_t exec_id, int wait_status);
  // Reads what is readable now; returns false at EOF or error.
  bool DrainOutput(Exec& e, bool is_err, bool until_eagain);
  void Send(uint64_t conn_id, FrameType t, std::string_view payload);
  // Sends e (the operation failed) and closes once it is written.
  void SendOpError(uint64_t conn_id, const Error& err);
  // After a connection's queue shrank: feeds it what waits for it (a kept
  // process's output, a file being read).
  void OnConnDrained(uint64_t id, Conn& c);
  void CloseConn(uint64_t id);
  // Releases what a connection holds (attachment, file, watch); before erase.
  void ReleaseConn(uint64_t id, Conn& c);
  static ssize_t WriteConn(const Conn& c, const char* data, size_t len);
  void KillGroup(const Exec& e);
  void BeginTerminate();
  // The user's credentials from the sandbox's passwd and group files.
  Result<Credentials> Resolve(const std::string& user) const;
  // PATH, HOME, HOSTNAME, then the claim's env, then the request's.
  std::vector<std::string> CommandEnv(const Credentials& cred,
                                      const std::vector<std::string>& request_env) const;

  // --- port_mux.cc (channels over the VM port, proto/mux.h) ---
  // Y, Z, G, Q on the port's own stream; false for any other frame.
  bool OnMuxFrame(uint64_t port_id, const proto::Frame& f);
  // Decodes and handles what a channel has queued, unless its operation's
  // stdin is full; grants the host credit for what it consumed.
  void ChannelInput(uint64_t conn_id);
  bool ChannelStalled(const Conn& c) const;
  // Moves a channel's output to the port, within its credit and while the
  // port has little queued.
  void FlushChannel(uint64_t conn_id);
  // Every channel: input that waited, output that waited, refills (attached
  // output, file reads). Before each epoll_wait.
  void PumpChannels();
  // The host's Z: a hang-up, as EOF on a socket connection.
  void HangUpChannel(uint64_t conn_id);
  // Every channel, hung up (no Z: their host is gone): at a Q, and when
  // the port's host hangs up.
  void HangUpAllChannels();
  // Writes what the port has queued, if nothing was queued before (else
  // EPOLLOUT will).
  void WritePortNow(bool was_idle);

  // --- live_procs.cc ---
  // True for the frames of live sandboxes; handles them.
  bool OnLiveFrame(uint64_t id, Conn& c, proto::Frame& f);
  void StartKept(uint64_t conn_id, Conn& c, const proto::ExecRequest& req);
  void Attach(uint64_t conn_id, Conn& c, const proto::AttachRequest& req);
  void OnKeptOutput(pid_t pid, bool is_err);
  void OnKeptStdin(pid_t pid);
  void OnKeptTimer(pid_t pid);
  void OnKeptReaped(Kept& k, int wait_status);
  // Reads one chunk; what it found.
  enum class ReadResult { kData, kEmpty, kEof, kBlocked };
  ReadResult ReadKept(Kept& k, bool is_err);
  // Once reaped: drains what is left, then makes the exit final.
  void TryFinishKept(Kept& k);
  void FinishKeptDrain(Kept& k);
  // Queues the ring's bytes a listener has not had (bounded), then X once
  // it has all of an exited process's output.
  void PumpListener(Kept& k, uint64_t conn_id);
  void Detach(uint64_t conn_id, Conn& c);
  uint64_t MaxLag(const Kept& k) const;
  void Retain();
  void KeptStdinFrame(Conn& c, const proto::Frame& f);
  // The operation's input (a kept process's stdin, a tunnel's bytes for its
  // service) is full: the host's connection is not read meanwhile.
  bool InputFull(const Conn& c) const;

  // --- live_files.cc ---
  void OnFileRequest(uint64_t conn_id, Conn& c, const proto::FileRequest& req);
  void PumpFileRead(uint64_t conn_id, Conn& c);
  void FileWriteFrame(uint64_t conn_id, Conn& c, const proto::Frame& f);
  void StartWatch(uint64_t conn_id, Conn& c, const proto::FileRequest& req, Credentials cred);
  void OnInotify(uint64_t conn_id);

  // --- live_ports.cc ---
  void StartTunnel(uint64_t conn_id, Conn& c, const proto::TunnelRequest& req);
  // connect(2) to the tunnel's port at 127.0.0.1 (or ::1).
  void TunnelConnect(uint64_t conn_id, Conn& c);
  void TunnelConnectFailed(uint64_t conn_id, Conn& c, int err);
  void OnTunnel(uint64_t conn_id, uint32_t events);
  // I and C of a tunnel's connection.
  void TunnelFrame(Conn& c, const proto::Frame& f);
  void TunnelWrite(Conn& c);
  void TunnelRead(uint64_t conn_id, Conn& c);
  // The epoll interest of a tunnel's socket, from its state and the host's queue.
  void TunnelInterest(uint64_t conn_id, Conn& c);

  ServerOptions opts_;
  UniqueFd epoll_;
  Watched listen_, signal_, grace_;
  std::map<uint64_t, Conn> conns_;
  std::map<uint64_t, Exec> execs_;
  std::map<pid_t, uint64_t> exec_by_pid_;
  std::map<pid_t, Kept> kept_;
  std::deque<pid_t> exited_;  // kept processes whose exit is final, oldest first
  std::vector<std::string> claim_env_;
  uint64_t port_conn_ = 0;                 // the port's Conn (port mode), 0: none
  std::map<uint32_t, uint64_t> channels_;  // channel -> its Conn
  uint32_t max_channel_ = 0;               // highest channel opened since the last Q
  // The port's own stream (proto::PortDecoder): strict from the first Q on.
  proto::PortDecoder port_dec_{proto::PortDecoder::Sender::kHost};
  bool port_out_of_step_ = false;  // F sent for the current run of skipped bytes
  uint64_t next_id_ = 1;
  bool terminating_ = false;
  bool any_exec_ = false;  // a command has started: the identity is fixed from then on
};

}  // namespace wb::agent
