#include "sandbox/vm/mux_bridge.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <vector>

#include "base/fs.h"
#include "base/log.h"
#include "proto/agent_proto.h"
#include "proto/mux.h"
#include "sandbox/agent_client.h"

namespace wb::vm {
namespace {

using proto::FrameType;

// Client bytes move to the port while less than this is queued there.
constexpr size_t kPortHighWater = 256 << 10;

struct Client {
  UniqueFd fd;
  std::string out;         // from the agent, for the client
  size_t out_off = 0;      //
  uint64_t credit = 0;     // bytes the client may still send the agent
  uint64_t ungranted = 0;  // bytes written to the client since the last G
  bool opened = false;     // a Y went to the agent: it knows the channel
  bool agent_closed = false;
  size_t pending() const { return out.size() - out_off; }
};

}  // namespace

struct MuxBridge::State {
  UniqueFd port, listener;
  // The agent's stream, strict: from a q on, only what the agent sends there.
  proto::PortDecoder dec{proto::PortDecoder::Sender::kAgent};
  std::string out;  // for the port
  size_t out_off = 0;
  std::map<uint32_t, Client> clients;
  uint32_t next_channel = 1;
  size_t pending() const { return out.size() - out_off; }
};

Result<std::unique_ptr<MuxBridge>> MuxBridge::Start(UniqueFd port, const std::string& listen_path,
                                                    int timeout_ms, bool resync) {
  std::unique_ptr<MuxBridge> b(new MuxBridge());
  b->path_ = listen_path;
  b->st_ = std::make_unique<State>();
  State& st = *b->st_;
  st.port = std::move(port);
  st.dec.set_strict(true);
  // Q, then everything up to the q that echoes its nonce is an earlier
  // host's (stale, possibly cut mid-frame: the strict decoder skips what it
  // cannot read, and the agent pads before its q when it had a host).
  const std::string nonce = WB_TRY(RandomHex(8));
  std::string hello;
  proto::AppendReset(hello, FrameType::kMuxReset, nonce, resync ? proto::kSyncPadBytes : 0);
  WB_RETURN_IF_ERROR(WriteAll(st.port.get(), hello));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (bool done = false; !done;) {
    while (auto f = st.dec.Next()) {
      if (f->type == FrameType::kMuxResetDone && f->payload == nonce) {
        done = true;
        break;
      }
    }
    if (done) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      return Fail(ErrorCode::kFailedPrecondition, "mux reset", listen_path,
                  "no answer from the agent (an agent that does not serve channels, or a stream "
                  "out of step)");
    }
    pollfd p{st.port.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return Errno("poll", listen_path);
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::read(st.port.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail("mux reset", listen_path, "the port closed");
    st.dec.Feed(std::string_view(buf, static_cast<size_t>(n)));
  }
  (void)st.dec.TakeSkipped();  // the earlier host's
  WB_RETURN_IF_ERROR(SetNonBlocking(st.port.get()));
  ::unlink(listen_path.c_str());  // an earlier bridge's
  st.listener = WB_TRY(ListenUnix(listen_path));
  WB_RETURN_IF_ERROR(SetNonBlocking(st.listener.get()));
  b->stop_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!b->stop_) return Errno("eventfd", "");
  b->thread_ = std::thread([raw = b.get()] { raw->Run(); });
  return b;
}

MuxBridge::~MuxBridge() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t n = ::write(stop_.get(), &one, sizeof one);
    (void)n;
    thread_.join();
  }
  if (!path_.empty()) ::unlink(path_.c_str());
}

void MuxBridge::Run() {
  State& st = *st_;
  auto port_write = [&] {
    while (st.pending()) {
      ssize_t n = ::send(st.port.get(), st.out.data() + st.out_off, st.pending(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN;
      }
      st.out_off += static_cast<size_t>(n);
    }
    st.out.clear();
    st.out_off = 0;
    return true;
  };
  // The client hung up (or cannot be written to): Z, once the agent knows it.
  auto hang_up = [&](uint32_t ch) {
    auto it = st.clients.find(ch);
    if (it == st.clients.end()) return;
    if (it->second.opened && !it->second.agent_closed) proto::AppendChannelClose(st.out, ch);
    st.clients.erase(it);
  };
  auto on_frame = [&](const proto::Frame& f) {
    if (f.type == FrameType::kFailure) {
      spdlog::warn("mux bridge {}: the agent says: {}", path_, f.payload);
      return;
    }
    if (f.type != FrameType::kChannelData && f.type != FrameType::kChannelClose &&
        f.type != FrameType::kChannelGrant)
      return;  // nothing else is addressed to the bridge
    auto p = proto::ParseChannelPayload(f.type, f.payload);
    if (!p.ok()) return;
    auto it = st.clients.find(p->channel);
    if (it == st.clients.end()) return;  // hung up already
    Client& c = it->second;
    if (f.type == FrameType::kChannelData) {
      c.out.append(p->rest);
    } else if (f.type == FrameType::kChannelClose) {
      c.agent_closed = true;  // closed once its bytes are written
    } else {
      c.credit += proto::GrantCount(*p);
    }
  };

  std::vector<pollfd> fds;
  std::vector<uint32_t> chans;
  char buf[proto::kMaxChunk];
  for (;;) {
    // Clients the agent closed and that have had everything.
    for (auto it = st.clients.begin(); it != st.clients.end();) {
      if (it->second.agent_closed && !it->second.pending()) {
        it = st.clients.erase(it);
      } else {
        ++it;
      }
    }
    if (!port_write()) break;
    fds.clear();
    chans.clear();
    fds.push_back({stop_.get(), POLLIN, 0});
    fds.push_back({st.port.get(), static_cast<short>(POLLIN | (st.pending() ? POLLOUT : 0)), 0});
    fds.push_back({st.listener.get(), POLLIN, 0});
    const bool port_room = st.pending() < kPortHighWater;
    for (auto& [ch, c] : st.clients) {
      short ev = 0;
      if (c.credit > 0 && port_room && !c.agent_closed) ev |= POLLIN;
      if (c.pending()) ev |= POLLOUT;
      // Nothing to do with it now: left out, or a hang-up (POLLHUP, always
      // reported) would wake the loop until credit comes. Its hang-up is
      // seen once it is read again.
      fds.push_back({ev ? c.fd.get() : -1, ev, 0});
      chans.push_back(ch);
    }
    int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents) break;  // stop
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::read(st.port.get(), buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // QEMU is gone
      if (n > 0) {
        st.dec.Feed(std::string_view(buf, static_cast<size_t>(n)));
        while (auto f = st.dec.Next()) on_frame(*f);
        if (st.dec.TakeSkipped() > 0) {
          // In step since the q: a broken agent (or port); its channels
          // cannot be trusted any more.
          spdlog::warn("mux bridge {}: the port's stream is out of step", path_);
          break;
        }
      }
    }
    if (fds[2].revents & POLLIN) {
      for (;;) {
        int fd = ::accept4(st.listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        // Channel ids only grow (the agent drops late bytes of a closed one
        // by that); 2^32 operations would need a new Q.
        Client& c = st.clients[st.next_channel++];
        c.fd = UniqueFd(fd);
        c.credit = proto::kChannelWindow;
      }
    }
    for (size_t i = 0; i < chans.size(); ++i) {
      const short rev = fds[3 + i].revents;
      if (!rev) continue;
      const uint32_t ch = chans[i];
      auto it = st.clients.find(ch);
      if (it == st.clients.end()) continue;
      Client& c = it->second;
      if (rev & POLLOUT) {
        bool failed = false;
        while (c.pending()) {
          ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.pending(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n < 0) {
            if (errno == EINTR) continue;
            failed = errno != EAGAIN;
            break;
          }
          c.out_off += static_cast<size_t>(n);
          c.ungranted += static_cast<uint64_t>(n);
        }
        if (c.out_off == c.out.size()) {
          c.out.clear();
          c.out_off = 0;
        }
        if (c.ungranted >= proto::kGrantStep && !c.agent_closed) {
          proto::AppendGrant(st.out, ch, static_cast<uint32_t>(c.ungranted));
          c.ungranted = 0;
        }
        if (failed) {
          hang_up(ch);
          continue;
        }
      }
      if ((rev & (POLLIN | POLLHUP | POLLERR)) && (fds[3 + i].events & POLLIN)) {
        const size_t want = std::min<uint64_t>(sizeof buf, c.credit);
        ssize_t n = ::read(c.fd.get(), buf, want);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
          hang_up(ch);
          continue;
        }
        proto::AppendChannelData(st.out, ch, std::string_view(buf, static_cast<size_t>(n)));
        c.opened = true;
        c.credit -= static_cast<uint64_t>(n);
      }
    }
  }
  // The port ended (or the bridge stops): every connection fails at once,
  // and new ones are refused.
  alive_ = false;
  st.clients.clear();
  st.listener.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
}

}  // namespace wb::vm
