// Channels over a VM's virtio-serial port (docs/protocol.md, "Channels"):
// the port is one byte stream, so the host multiplexes connections over it.
// Each channel is a virtual connection with a Unix-socket connection's
// semantics (one operation, hang-up, the agent's close); its bytes travel
// in Y frames, its end in a Z frame, and per-channel credit (G frames) bounds
// what either side may have in flight, so one slow channel never stalls the
// others and neither side buffers without bound.
//
//   Y  both ways     channel (4 bytes, big-endian) | a piece of the channel's
//                    byte stream (its inner frames, split anywhere)
//   Z  both ways     channel: closed by the sender (a hang-up, or the agent's
//                    close); never answered; later frames of it are dropped
//   G  both ways     channel | count (4 bytes): the sender consumed count more
//                    bytes of the channel; the peer may send that many more
//   Q  host -> agent a nonce (0 to 64 bytes): forget every channel (a newly
//                    connected host)
//   q  agent -> host Q's nonce: done; what came before q is stale
//
// The port's own stream (not a channel's) may carry 0x00 bytes between
// frames: padding, skipped. A new host that may follow a dead one (a daemon
// that took over a live VM) sends kSyncPadBytes of it before its Q, and the
// agent does the same before its q when an earlier host had channels: any
// frame the dead host (or the agent, towards it) left half-written is then
// completed or skipped by a decoder that checks each header (PortDecoder),
// and the Q (the q) is read in step.
//
// Pure helpers only: the agent (agent/port_mux.cc) and the host's bridge
// (sandbox/vm/mux_bridge.cc) keep the state.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb::proto {

// Bytes of a channel's stream either side may send before the peer grants
// more: the window is open from the channel's first Y on.
inline constexpr uint32_t kChannelWindow = 256u << 10;
// A receiver grants once it has consumed this much (so a sender blocked on
// credit always has at least window - step bytes waiting at the receiver).
inline constexpr uint32_t kGrantStep = 64u << 10;
// The largest piece one Y frame carries.
inline constexpr size_t kMaxChunk = 64u << 10;

// Appends Y(channel, data); data.size() <= kMaxChunk.
void AppendChannelData(std::string& out, uint32_t channel, std::string_view data);
// Appends Z(channel).
void AppendChannelClose(std::string& out, uint32_t channel);
// Appends G(channel, count).
void AppendGrant(std::string& out, uint32_t channel, uint32_t count);

// A Y, Z or G payload: the channel, then the rest (Y: the data; G: the
// count's 4 bytes; Z: nothing).
struct ChannelPayload {
  uint32_t channel = 0;
  std::string_view rest;
};
// Fails (bad_request) on a payload shorter than 4 bytes, channel 0, a Z with
// more than the channel, a G whose rest is not 4 bytes or is 0, an empty Y.
[[nodiscard]] Result<ChannelPayload> ParseChannelPayload(FrameType type, std::string_view payload);
// The count of a parsed G.
uint32_t GrantCount(const ChannelPayload& p);

// The longest nonce a Q carries (and its q echoes).
inline constexpr size_t kMaxResetNonce = 64;
// Padding before a resynchronising Q (and its q): more than the longest frame
// a strict PortDecoder accepts (a Y of kMaxChunk bytes: 5 + 4 + kMaxChunk).
inline constexpr size_t kSyncPadBytes = kMaxChunk + 4096;

// Appends Q(nonce), or q(nonce), after pad_bytes of padding.
void AppendReset(std::string& out, FrameType type, std::string_view nonce, size_t pad_bytes);

// The decoder of a port's own stream (docs/protocol.md, "Resynchronising"):
// never fails. At a frame boundary, 0x00 bytes are padding and skipped. A
// header it cannot accept is out of step: it skips one byte and tries the
// next, counting what it skipped. Strict (the bridge always; the agent from
// the first Q on), it accepts only what the sender may send on a port that
// carries channels, each with its own length bound:
//   from the host:  Y (5 to 4 + kMaxChunk), Z (4), G (8), Q (0 to 64), H (0)
//   from the agent: the same Y, Z, G, q (0 to 64), F (up to 64 KiB),
//                   h (up to 4 KiB)
// so no accepted header spans more than 5 + 4 + kMaxChunk bytes, and after
// kSyncPadBytes of padding the decoder is in step, wherever it started.
// Not strict: any known type up to kMaxFrame (a pool's exchanges).
class PortDecoder {
 public:
  enum class Sender { kHost, kAgent };
  explicit PortDecoder(Sender from) : from_(from) {}
  void set_strict(bool strict) { strict_ = strict; }
  bool strict() const { return strict_; }
  void Feed(std::string_view bytes);
  std::optional<Frame> Next();
  // Bytes skipped as out of step since the last call.
  uint64_t TakeSkipped();
  // Drops what is buffered (a frame whose sender is gone).
  void Reset();
  size_t buffered() const { return buf_.size() - pos_; }
  // Whether a header of this type and length is accepted.
  bool Accepts(char type, uint32_t len) const;

 private:
  Sender from_;
  bool strict_ = false;
  std::string buf_;
  size_t pos_ = 0;
  std::deque<Frame> ready_;
  uint64_t skipped_ = 0;
};

inline bool IsMuxFrame(FrameType t) {
  return t == FrameType::kChannelData || t == FrameType::kChannelClose ||
         t == FrameType::kChannelGrant || t == FrameType::kMuxReset ||
         t == FrameType::kMuxResetDone;
}

}  // namespace wb::proto
