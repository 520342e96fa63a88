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
//   Q  host -> agent empty: forget every channel (a newly connected host)
//   q  agent -> host empty: done; what came before q is stale
//
// Pure helpers only: the agent (agent/port_mux.cc) and the host's bridge
// (sandbox/vm/mux_bridge.cc) keep the state.
#pragma once

#include <cstdint>
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

inline bool IsMuxFrame(FrameType t) {
  return t == FrameType::kChannelData || t == FrameType::kChannelClose ||
         t == FrameType::kChannelGrant || t == FrameType::kMuxReset ||
         t == FrameType::kMuxResetDone;
}

}  // namespace wb::proto
