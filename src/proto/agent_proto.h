// The exec channel between the host and warmbox-agent.
//
// A stream of frames: 1-byte type, 4-byte big-endian payload length, payload.
// Payloads are capped at kMaxFrame; a peer announcing more is cut off before
// anything is allocated. One exec per connection; heartbeats may repeat.
//
//   host -> agent  'H' heartbeat            agent -> host  'h' {"pid":..}
//                  'E' ExecRequest (JSON)                  'O' stdout bytes
//                  'I' stdin bytes                         'R' stderr bytes
//                  'C' close stdin                         'X' ExecExit (JSON)
//                                                          'F' error text
// See docs/protocol.md.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::proto {

inline constexpr uint32_t kMaxFrame = 16u << 20;
inline constexpr size_t kHeaderSize = 5;
inline constexpr uint64_t kDefaultOutputCap = 16u << 20;

enum class FrameType : char {
  kHeartbeat = 'H',
  kHeartbeatReply = 'h',
  kExec = 'E',
  kStdin = 'I',
  kStdinClose = 'C',
  kStdout = 'O',
  kStderr = 'R',
  kExit = 'X',
  kFailure = 'F',
  kIdentity = 'D',  // host -> guest agent: a VM clone's identity (docs/protocol.md)
  kIdentityReply = 'd',
  // Live sandboxes (docs/protocol.md, "Live sandboxes").
  kStarted = 'S',      // agent -> host {"pid":N,"offset":N}
  kAttach = 'A',       // host -> agent {"pid":N,"from":N}
  kResize = 'W',       // host -> agent {"rows":R,"cols":C}
  kSignal = 'K',       // host -> agent {"pid":N,"signal":N}
  kSignalReply = 'k',  // agent -> host {}
  kList = 'P',         // host -> agent (empty)
  kListReply = 'p',    // agent -> host {"processes":[...]}
  kClaim = 'M',        // host -> agent {"env":[..],"persist":true}
  kClaimReply = 'm',   // agent -> host {}
  kFile = 'L',         // host -> agent FileRequest
  kFileReply = 'l',    // agent -> host FileReply
  kFileEnd = 'x',      // agent -> host {"size":N}: end of a read
  kWatchEvents = 'V',  // agent -> host {"events":[...]}
  kOpError = 'e',      // agent -> host {"code":..,"errno":N,"message":..}
  kTunnel = 'T',       // host -> agent {"port":N}: a TCP connection inside the sandbox
  kTunnelReply = 't',  // agent -> host {}: connected
  // Channels over a VM's port (proto/mux.h; docs/protocol.md, "Channels").
  kChannelData = 'Y',   // both ways: channel | bytes of its stream
  kChannelClose = 'Z',  // both ways: channel closed
  kChannelGrant = 'G',  // both ways: channel | count: credit
  kMuxReset = 'Q',      // host -> agent: forget every channel
  kMuxResetDone = 'q',  // agent -> host: the reset is done
};

bool IsKnownFrameType(char c);

struct Frame {
  FrameType type;
  std::string payload;
};

// Appends one encoded frame to out. payload must be <= kMaxFrame.
void AppendFrame(std::string& out, FrameType type, std::string_view payload);
std::string EncodeFrame(FrameType type, std::string_view payload);

// Incremental decoder: Feed bytes as they arrive, then Next() until empty.
class FrameDecoder {
 public:
  // Returns an error (and stays failed) on an unknown type or oversize frame.
  [[nodiscard]] Result<void> Feed(std::string_view bytes);
  std::optional<Frame> Next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  [[nodiscard]] Result<void> Validate();
  std::string buf_;
  size_t pos_ = 0;
  std::deque<Frame> ready_;
  std::optional<Error> failed_;
};

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;             // "K=V", applied over the agent's defaults
  std::string cwd;                          // empty: "/"
  std::string user;                         // empty: root; "name", "uid", "uid:gid", "name:group"
  uint64_t timeout_ms = 0;                  // 0: none
  uint64_t output_cap = kDefaultOutputCap;  // per stream
  bool stdin = false;                       // host will send 'I'/'C'; else stdin is empty
  uint64_t nofile = 0;                      // RLIMIT_NOFILE; 0: the sandbox's default
  // Live sandboxes (docs/protocol.md, "Kept processes"). All default to
  // absent on the wire, so a pool run encodes exactly as before.
  bool keep = false;  // outlives its connection; answered with 'S'
  bool tty = false;   // a new pseudo-terminal (implies stdin)
  uint32_t rows = 0;  // terminal size; 0: the agent's default (24x80)
  uint32_t cols = 0;
  std::string tag;          // free text, shown by 'P' (e.g. "main")
  uint64_t ring_bytes = 0;  // output ring; 0: kDefaultRingBytes
};

inline constexpr uint64_t kDefaultRingBytes = 1u << 20;
inline constexpr uint64_t kMinRingBytes = 1024;
inline constexpr uint64_t kMaxRingBytes = 256u << 20;

struct ExecExit {
  int exit_code = 0;  // code, 128+signal, 137 on timeout, 127 when not started
  int signal = 0;
  bool timed_out = false;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string error;  // why the program could not be started
  // Filled by the host, not the agent: the sandbox's cgroup counted an OOM
  // kill during the command.
  bool oom_killed = false;
};

std::string ToJson(const ExecRequest& r);
std::string ToJson(const ExecExit& e);
[[nodiscard]] Result<ExecRequest> ParseExecRequest(std::string_view json);
[[nodiscard]] Result<ExecExit> ParseExecExit(std::string_view json);

// --- Live sandboxes (docs/protocol.md, "Live sandboxes") ----------------------
// Every parser refuses a payload that is not a JSON object, nests deeper than
// kMaxJsonDepth, or has a member of the wrong type; the error (bad_request)
// names the member. Absent or null members take their defaults.

// 'S': the process started (or was attached); offset is where the output
// that follows begins (bytes since the process's first output byte).
struct Started {
  int64_t pid = 0;
  uint64_t offset = 0;
};
std::string ToJson(const Started& s);
[[nodiscard]] Result<Started> ParseStarted(std::string_view json);

// 'A': attach to a kept process; from < 0: only output from now on.
struct AttachRequest {
  int64_t pid = 0;  // required, > 0
  int64_t from = -1;
};
std::string ToJson(const AttachRequest& a);
[[nodiscard]] Result<AttachRequest> ParseAttachRequest(std::string_view json);

// 'W': the terminal size of the connection's process.
struct ResizeRequest {
  uint32_t rows = 0;  // required, 1..65535
  uint32_t cols = 0;  // required, 1..65535
};
std::string ToJson(const ResizeRequest& r);
[[nodiscard]] Result<ResizeRequest> ParseResizeRequest(std::string_view json);

// 'K': a signal (by number, 1..64) to a kept process's process group.
struct SignalRequest {
  int64_t pid = 0;  // required, > 0
  int signal = 0;   // required, 1..64
};
std::string ToJson(const SignalRequest& s);
[[nodiscard]] Result<SignalRequest> ParseSignalRequest(std::string_view json);

// One entry of 'p'.
struct ProcessInfo {
  int64_t pid = 0;
  std::vector<std::string> argv;
  std::string cwd;
  std::string user;
  std::string tag;
  bool tty = false;
  bool running = false;
  std::optional<ExecExit> exit;  // null while running
  int64_t started_ms = 0;        // wall clock
};
std::string ToJson(const ProcessInfo& p);
// 'p': {"processes":[...]}
std::string ToJson(const std::vector<ProcessInfo>& list);
[[nodiscard]] Result<std::vector<ProcessInfo>> ParseProcessList(std::string_view json);

// 'M': the claim of a pre-booted sandbox as a live one.
struct ClaimRequest {
  std::vector<std::string> env;  // "K=V": default env of later commands
  bool persist = false;          // clear the agent's parent-death signal
};
std::string ToJson(const ClaimRequest& c);
[[nodiscard]] Result<ClaimRequest> ParseClaimRequest(std::string_view json);

// 'L': one file operation. Which members matter depends on op.
struct FileRequest {
  std::string op;                // stat, list, mkdir, remove, rename, read, write, watch
  std::string path;              // required, absolute
  std::string user;              // "" root; as ExecRequest::user
  uint32_t depth = 1;            // list: >= 1
  std::optional<uint32_t> mode;  // mkdir (default 0755), write (default 0644)
  bool recursive = false;        // remove, watch
  std::string to;                // rename: required, absolute
  bool append = false;           // write
  uint64_t max_bytes = 0;        // write: 0 none
};
std::string ToJson(const FileRequest& r);
[[nodiscard]] Result<FileRequest> ParseFileRequest(std::string_view json);

// 'l' for stat, mkdir, rename, read (first) and write (last).
struct FileStat {
  std::string name;  // last path component ("/" for the root)
  std::string path;
  std::string type;  // file, dir, symlink, other
  uint64_t size = 0;
  uint32_t mode = 0;         // permission bits and set-id/sticky (st_mode & 07777)
  std::string permissions;   // ls -l style, "-rw-r--r--"
  std::string owner, group;  // names from the sandbox's passwd/group; the number when none
  uint32_t uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  std::string symlink_target;   // type symlink only
  std::optional<bool> created;  // mkdir only
};
std::string ToJson(const FileStat& s);
[[nodiscard]] Result<FileStat> ParseFileStat(std::string_view json);
// 'l' for list: {"entries":[...]}
std::string ToJson(const std::vector<FileStat>& entries);
[[nodiscard]] Result<std::vector<FileStat>> ParseFileEntries(std::string_view json);

// 'x': the end of a read; size is the number of bytes sent.
struct FileEnd {
  uint64_t size = 0;
};
std::string ToJson(const FileEnd& e);
[[nodiscard]] Result<FileEnd> ParseFileEnd(std::string_view json);

// One entry of 'V' {"events":[...]}; type: create, write, remove, rename, chmod.
struct WatchEvent {
  std::string type;
  std::string path;  // absolute
  bool is_dir = false;
};
std::string ToJson(const std::vector<WatchEvent>& events);
[[nodiscard]] Result<std::vector<WatchEvent>> ParseWatchEvents(std::string_view json);

// 'T': a byte stream to TCP port N on the sandbox's loopback (docs/protocol.md,
// "Ports").
struct TunnelRequest {
  uint32_t port = 0;  // required, 1..65535
};
std::string ToJson(const TunnelRequest& t);
[[nodiscard]] Result<TunnelRequest> ParseTunnelRequest(std::string_view json);

// 'e': a failed operation; code is an ErrorCodeName ("not_found", ...).
struct OpError {
  std::string code = "internal";
  int err = 0;  // errno, 0 when none ("errno" on the wire)
  std::string message;
};
std::string ToJson(const OpError& e);
[[nodiscard]] Result<OpError> ParseOpError(std::string_view json);
// The OpError of an Error: its code's name, errno and ToString().
OpError ToOpError(const Error& e);

}  // namespace wb::proto
