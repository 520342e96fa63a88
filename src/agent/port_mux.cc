// Channels over a VM's virtio-serial port (proto/mux.h; docs/protocol.md,
// "Channels"). The port is one byte stream; the host's bridge relays each of
// its own connections as a channel, and the agent serves each channel as a
// Conn without an fd, so every operation (kept processes, attach, files,
// watches, pool runs) behaves exactly as on a Unix socket connection:
//
//   host's first Y of channel N   accept(): a new Conn (N above every channel
//                                 opened since the last Q; else a stale one's
//                                 late bytes, dropped)
//   Y N (host -> agent)           read(): queued in inq, decoded unless the
//                                 operation's stdin is full (UpdateInterest's
//                                 EPOLLIN backpressure)
//   Y N (agent -> host)           write(): Conn::out moved to the port within
//                                 the channel's credit (G from the host)
//   Z N from the host             EOF: the hang-up path (a pool run's command
//                                 is killed, an attachment detached, an
//                                 upload undone)
//   the agent closes              Z N, after all of the channel's output
//
// Credit both ways (kChannelWindow, granted every kGrantStep consumed) bounds
// what each side holds per channel, so the port is always read: a channel
// whose command does not read its stdin never stalls the others.
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/server_impl.h"
#include "proto/mux.h"

namespace wb::agent {
namespace {

// Channel output moves to the port while less than this is queued there.
constexpr size_t kPortHighWater = 256 << 10;

}  // namespace

bool ServerImpl::OnMuxFrame(uint64_t port_id, const proto::Frame& f) {
  switch (f.type) {
    case FrameType::kMuxReset: {
      // A new host: every channel of the old one is hung up (no Z: the host
      // that knew them is gone), then q (with the host's nonce) marks where
      // the new host's stream begins. If a host had channels before, what
      // the agent sent it may have been cut mid-frame: padding first, so the
      // new host reads the q in step (proto/mux.h, kSyncPadBytes).
      auto port = conns_.find(port_id);
      if (port == conns_.end()) return true;
      const bool pad = port_dec_.strict() || port->second.pending() > 0;
      HangUpAllChannels();
      max_channel_ = 0;
      port_out_of_step_ = false;
      port_dec_.set_strict(true);  // from now on only channel frames
      // Frames for channels that are gone (the first may be half-written:
      // the new host resynchronises on the padding before the q).
      port->second.out.clear();
      port->second.out_off = 0;
      const bool was_idle = true;
      proto::AppendReset(port->second.out, FrameType::kMuxResetDone, f.payload,
                         pad ? proto::kSyncPadBytes : 0);
      WritePortNow(was_idle);
      return true;
    }
    case FrameType::kChannelData:
    case FrameType::kChannelClose:
    case FrameType::kChannelGrant:
      break;
    default:
      return false;
  }
  auto p = proto::ParseChannelPayload(f.type, f.payload);
  if (!p.ok()) {
    // The port goes on; the host that sent it is broken, and says so.
    Send(port_id, FrameType::kFailure, p.error().ToString());
    return true;
  }
  auto ch = channels_.find(p->channel);
  if (f.type == FrameType::kChannelData) {
    uint64_t id = 0;
    if (ch != channels_.end()) {
      id = ch->second;
    } else if (p->channel > max_channel_) {
      id = next_id_++;
      Conn& c = conns_[id];
      c.channel = p->channel;
      c.credit = proto::kChannelWindow;
      channels_[p->channel] = id;
      max_channel_ = p->channel;
    } else {
      return true;  // a channel the agent closed: the host's late bytes
    }
    conns_[id].inq.append(p->rest);
    ChannelInput(id);
    return true;
  }
  if (ch == channels_.end()) return true;  // closed already: nothing to do
  if (f.type == FrameType::kChannelClose) {
    HangUpChannel(ch->second);
  } else {
    conns_[ch->second].credit += proto::GrantCount(*p);
    FlushChannel(ch->second);
  }
  return true;
}

bool ServerImpl::ChannelStalled(const Conn& c) const {
  if (c.exec) {
    auto e = execs_.find(c.exec);
    return e != execs_.end() && e->second.stdin_buf.size() > kStdinHighWater;
  }
  return InputFull(c);
}

void ServerImpl::ChannelInput(uint64_t id) {
  for (;;) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    if (c.inq.empty()) break;
    if (c.peer_closed) {
      // Nothing more is read from it (an error was sent): dropped, and
      // granted, so the host is never left waiting on it.
      c.ungranted += c.inq.size();
      c.inq.clear();
      break;
    }
    if (ChannelStalled(c)) break;
    const size_t n = std::min(c.inq.size(), kReadChunk);
    std::string chunk = c.inq.substr(0, n);
    c.inq.erase(0, n);
    c.ungranted += n;
    if (auto r = c.dec.Feed(chunk); !r.ok()) {
      Send(id, FrameType::kFailure, r.error().ToString());
      c.close_after_flush = true;
      c.peer_closed = true;
      continue;
    }
    while (auto f = c.dec.Next()) {
      OnFrame(id, c, std::move(*f));
      if (!conns_.count(id)) return;
    }
  }
  auto it = conns_.find(id);
  auto port = conns_.find(port_conn_);
  if (it == conns_.end() || port == conns_.end()) return;
  Conn& c = it->second;
  if (c.ungranted >= proto::kGrantStep) {
    const bool was_idle = port->second.pending() == 0;
    proto::AppendGrant(port->second.out, c.channel, static_cast<uint32_t>(c.ungranted));
    c.ungranted = 0;
    WritePortNow(was_idle);
  }
}

void ServerImpl::FlushChannel(uint64_t id) {
  auto it = conns_.find(id);
  auto port = conns_.find(port_conn_);
  if (it == conns_.end() || port == conns_.end()) return;
  Conn& c = it->second;
  Conn& p = port->second;
  const bool was_idle = p.pending() == 0;
  bool moved = false;
  while (c.pending() && c.credit > 0 && p.pending() < kPortHighWater) {
    const size_t n = std::min({c.pending(), static_cast<size_t>(c.credit), proto::kMaxChunk});
    proto::AppendChannelData(p.out, c.channel, std::string_view(c.out.data() + c.out_off, n));
    c.out_off += n;
    c.credit -= n;
    moved = true;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1 << 20)) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  if (moved) WritePortNow(was_idle);
}

void ServerImpl::PumpChannels() {
  std::vector<uint64_t> ids;
  ids.reserve(channels_.size());
  for (const auto& [ch, id] : channels_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    if (!it->second.inq.empty() && !ChannelStalled(it->second)) ChannelInput(id);
    it = conns_.find(id);
    if (it == conns_.end()) continue;
    FlushChannel(id);
    // As after a socket's write: refill (attached output, a file read),
    // each bounded by its own high water, then move what it queued.
    OnConnDrained(id, it->second);
    FlushChannel(id);
  }
}

void ServerImpl::HangUpChannel(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  c.peer_closed = true;
  c.host_closed = true;
  if (c.exec) {
    // The host went away mid-run: the command must not outlive it.
    auto e = execs_.find(c.exec);
    if (e != execs_.end()) {
      e->second.conn = 0;
      KillGroup(e->second);
    }
  }
  CloseConn(id);
}

void ServerImpl::HangUpAllChannels() {
  std::vector<uint64_t> ids;
  for (const auto& [ch, id] : channels_) ids.push_back(id);
  for (uint64_t id : ids) HangUpChannel(id);
}

void ServerImpl::WritePortNow(bool was_idle) {
  auto it = conns_.find(port_conn_);
  if (it == conns_.end() || !was_idle) return;
  Conn& p = it->second;
  // As Send: at once when nothing was queued; errors and short writes are
  // left to the EPOLLOUT path.
  ssize_t n = WriteConn(p, p.out.data() + p.out_off, p.pending());
  if (n > 0) p.out_off += static_cast<size_t>(n);
  if (p.out_off == p.out.size()) {
    p.out.clear();
    p.out_off = 0;
  }
}

}  // namespace wb::agent
