// Channel frames over a VM's port (proto/mux.h).
#include "proto/mux.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/assert_ok.h"

namespace wb::proto {
namespace {

std::vector<Frame> Decode(const std::string& bytes) {
  FrameDecoder d;
  EXPECT_TRUE(d.Feed(bytes).ok());
  std::vector<Frame> out;
  while (auto f = d.Next()) out.push_back(std::move(*f));
  return out;
}

TEST(MuxTest, ChannelDataIsTheChannelBigEndianThenTheBytes) {
  std::string out;
  AppendChannelData(out, 0x01020304, "hi");
  EXPECT_EQ(out, std::string("Y\0\0\0\x06\x01\x02\x03\x04hi", 11));
  auto f = Decode(out);
  ASSERT_EQ(f.size(), 1u);
  auto p = ParseChannelPayload(f[0].type, f[0].payload);
  ASSERT_OK(p);
  EXPECT_EQ(p->channel, 0x01020304u);
  EXPECT_EQ(p->rest, "hi");
}

TEST(MuxTest, InnerFramesTravelSplitAnywhere) {
  // A channel's stream is bytes: an inner frame may span Y frames.
  std::string inner = EncodeFrame(FrameType::kExec, R"({"argv":["true"]})") +
                      EncodeFrame(FrameType::kStdinClose, "");
  std::string out;
  AppendChannelData(out, 7, inner.substr(0, 3));
  AppendChannelData(out, 7, inner.substr(3));
  FrameDecoder channel;
  for (const Frame& f : Decode(out)) {
    auto p = ParseChannelPayload(f.type, f.payload);
    ASSERT_OK(p);
    EXPECT_EQ(p->channel, 7u);
    ASSERT_TRUE(channel.Feed(p->rest).ok());
  }
  auto e = channel.Next();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, FrameType::kExec);
  auto c = channel.Next();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->type, FrameType::kStdinClose);
}

TEST(MuxTest, CloseAndGrant) {
  std::string out;
  AppendChannelClose(out, 5);
  AppendGrant(out, 5, 65536);
  EXPECT_EQ(out, std::string("Z\0\0\0\x04\0\0\0\x05G\0\0\0\x08\0\0\0\x05\0\x01\0\0", 22));
  auto f = Decode(out);
  ASSERT_EQ(f.size(), 2u);
  auto z = ParseChannelPayload(f[0].type, f[0].payload);
  ASSERT_OK(z);
  EXPECT_EQ(z->channel, 5u);
  auto g = ParseChannelPayload(f[1].type, f[1].payload);
  ASSERT_OK(g);
  EXPECT_EQ(g->channel, 5u);
  EXPECT_EQ(GrantCount(*g), 65536u);
}

TEST(MuxTest, MalformedPayloadsAreRefused) {
  using T = FrameType;
  EXPECT_FALSE(ParseChannelPayload(T::kChannelData, "").ok());
  EXPECT_FALSE(ParseChannelPayload(T::kChannelData, std::string("\0\0\0", 3)).ok());
  EXPECT_FALSE(ParseChannelPayload(T::kChannelData, std::string("\0\0\0\x01", 4)).ok());  // no data
  EXPECT_FALSE(
      ParseChannelPayload(T::kChannelData, std::string("\0\0\0\0x", 5)).ok());  // channel 0
  EXPECT_FALSE(ParseChannelPayload(T::kChannelClose, std::string("\0\0\0\x01x", 5)).ok());
  EXPECT_FALSE(ParseChannelPayload(T::kChannelGrant, std::string("\0\0\0\x01\0\0\x01", 7)).ok());
  EXPECT_FALSE(ParseChannelPayload(T::kChannelGrant, std::string("\0\0\0\x01\0\0\0\0", 8)).ok());
  EXPECT_FALSE(ParseChannelPayload(T::kHeartbeat, std::string("\0\0\0\x01", 4)).ok());
  auto e = ParseChannelPayload(T::kChannelData, "ab");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
}

TEST(MuxTest, WindowExceedsTheGrantStep) {
  // A sender blocked on credit has at least window - step bytes unconsumed
  // at its peer, so a peer that grants every step never deadlocks it.
  static_assert(kChannelWindow >= 2 * kGrantStep);
  static_assert(kMaxChunk <= kMaxFrame - 4);
  EXPECT_TRUE(IsMuxFrame(FrameType::kMuxReset));
  EXPECT_FALSE(IsMuxFrame(FrameType::kExec));
}

// --- the port's own stream: padding and resynchronisation (PortDecoder) ---

std::vector<Frame> DecodePort(PortDecoder& d, const std::string& bytes, size_t chunk) {
  std::vector<Frame> out;
  for (size_t off = 0; off < bytes.size(); off += chunk) {
    d.Feed(std::string_view(bytes).substr(off, chunk));
    while (auto f = d.Next()) out.push_back(std::move(*f));
  }
  return out;
}

// A host's stream as a bridge writes it: channel frames of every size.
std::string HostStream(std::mt19937& rng) {
  std::string out;
  for (int i = 0; i < 40; ++i) {
    const uint32_t ch = 1 + rng() % 5;
    switch (rng() % 4) {
      case 0:
        AppendChannelClose(out, ch);
        break;
      case 1:
        AppendGrant(out, ch, 1 + rng() % 100000);
        break;
      default: {
        // Data that looks like frames and padding, to tempt the decoder.
        std::string data(1 + rng() % kMaxChunk, '\0');
        for (char& c : data) c = "QqYZG\0\x01\xff"[rng() % 8];
        AppendChannelData(out, ch, data);
      }
    }
  }
  return out;
}

TEST(PortDecoderTest, PaddingBetweenFramesIsSkipped) {
  std::string s(3, '\0');
  AppendChannelClose(s, 1);
  s.append(7, '\0');
  AppendGrant(s, 2, 9);
  AppendReset(s, FrameType::kMuxReset, "n1", 5);
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{5}, s.size()}) {
    PortDecoder d(PortDecoder::Sender::kHost);
    d.set_strict(true);
    auto f = DecodePort(d, s, chunk);
    ASSERT_EQ(f.size(), 3u) << chunk;
    EXPECT_EQ(f[0].type, FrameType::kChannelClose);
    EXPECT_EQ(f[1].type, FrameType::kChannelGrant);
    EXPECT_EQ(f[2].type, FrameType::kMuxReset);
    EXPECT_EQ(f[2].payload, "n1");
    EXPECT_EQ(d.TakeSkipped(), 0u);
  }
}

TEST(PortDecoderTest, StrictAcceptsOnlyWhatTheSenderMaySend) {
  PortDecoder host(PortDecoder::Sender::kHost), agent(PortDecoder::Sender::kAgent);
  host.set_strict(true);
  agent.set_strict(true);
  using T = FrameType;
  auto t = [](T x) { return static_cast<char>(x); };
  EXPECT_TRUE(host.Accepts(t(T::kChannelData), 5));
  EXPECT_TRUE(host.Accepts(t(T::kChannelData), 4 + kMaxChunk));
  EXPECT_FALSE(host.Accepts(t(T::kChannelData), 5 + kMaxChunk));
  EXPECT_FALSE(host.Accepts(t(T::kChannelData), 4));
  EXPECT_FALSE(host.Accepts(t(T::kChannelClose), 5));
  EXPECT_FALSE(host.Accepts(t(T::kChannelGrant), 4));
  EXPECT_TRUE(host.Accepts(t(T::kMuxReset), kMaxResetNonce));
  EXPECT_FALSE(host.Accepts(t(T::kMuxReset), kMaxResetNonce + 1));
  EXPECT_FALSE(host.Accepts(t(T::kMuxResetDone), 0));
  EXPECT_FALSE(host.Accepts(t(T::kExec), 10));
  EXPECT_FALSE(host.Accepts(t(T::kFailure), 10));
  EXPECT_TRUE(agent.Accepts(t(T::kMuxResetDone), 16));
  EXPECT_TRUE(agent.Accepts(t(T::kFailure), 10));
  EXPECT_FALSE(agent.Accepts(t(T::kMuxReset), 0));
  EXPECT_FALSE(agent.Accepts(t(T::kExit), 10));
  EXPECT_TRUE(host.Accepts(t(T::kHeartbeat), 0));
  EXPECT_FALSE(host.Accepts(t(T::kHeartbeat), 1));
  EXPECT_TRUE(agent.Accepts(t(T::kHeartbeatReply), 100));
  // Not strict (the agent before its first Q): a pool's exchanges.
  PortDecoder pool(PortDecoder::Sender::kHost);
  EXPECT_TRUE(pool.Accepts(t(T::kExec), 1000));
  EXPECT_TRUE(pool.Accepts(t(T::kClaim), 1000));
  EXPECT_FALSE(pool.Accepts(t(T::kExec), kMaxFrame + 1));
  EXPECT_FALSE(pool.Accepts('!', 0));
  // Every accepted frame is shorter than the pad, so the pad realigns.
  static_assert(kSyncPadBytes > kHeaderSize + 4 + kMaxChunk);
}

// The case the pad is for: a host (or the agent, towards it) died mid-frame,
// and a new host resynchronises the stream with the pad and a Q. Whatever the
// cut, the decoder finds the Q with the new host's nonce and every frame
// after it, in step.
void CheckResyncAfterCut(PortDecoder::Sender from, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::string old_stream = HostStream(rng);
  const FrameType reset =
      from == PortDecoder::Sender::kHost ? FrameType::kMuxReset : FrameType::kMuxResetDone;
  std::string after;
  AppendChannelData(after, 1, std::string("\0\0\0\x05hello", 9));
  AppendGrant(after, 1, 70000);
  AppendChannelClose(after, 1);
  // Cuts everywhere in the first frames, and at random further on; the
  // decoder may also have started anywhere (a new host reading the agent's
  // stream from the middle of a frame).
  std::vector<size_t> cuts;
  for (size_t c = 0; c < 40; ++c) cuts.push_back(c);
  for (int i = 0; i < 40; ++i) cuts.push_back(rng() % old_stream.size());
  for (size_t cut : cuts) {
    const size_t start = from == PortDecoder::Sender::kAgent ? rng() % (cut + 1) : 0;
    std::string s = old_stream.substr(start, cut - start);
    AppendReset(s, reset, "nonce-" + std::to_string(cut), kSyncPadBytes);
    s += after;
    PortDecoder d(from);
    d.set_strict(true);
    const size_t chunk = 1 + rng() % 70000;
    auto frames = DecodePort(d, s, chunk);
    size_t q = frames.size();
    for (size_t i = 0; i < frames.size(); ++i) {
      if (frames[i].type == reset && frames[i].payload == "nonce-" + std::to_string(cut)) q = i;
    }
    ASSERT_LT(q, frames.size()) << "cut " << cut << " start " << start << " chunk " << chunk;
    ASSERT_EQ(frames.size(), q + 4) << "cut " << cut;
    EXPECT_EQ(frames[q + 1].type, FrameType::kChannelData);
    EXPECT_EQ(frames[q + 1].payload, std::string("\0\0\0\x01\0\0\0\x05hello", 13));
    EXPECT_EQ(frames[q + 2].type, FrameType::kChannelGrant);
    EXPECT_EQ(frames[q + 3].type, FrameType::kChannelClose);
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(PortDecoderTest, HostResyncsAfterAFrameCutAnywhere) {
  CheckResyncAfterCut(PortDecoder::Sender::kHost, 1);
  CheckResyncAfterCut(PortDecoder::Sender::kHost, 2);
}

TEST(PortDecoderTest, AgentsStreamResyncsFromAnywhere) {
  CheckResyncAfterCut(PortDecoder::Sender::kAgent, 3);
  CheckResyncAfterCut(PortDecoder::Sender::kAgent, 4);
}

TEST(PortDecoderTest, WorstCaseHeaderBeforeThePadAndGarbage) {
  // The longest frame a strict decoder accepts, cut right after its header.
  std::string s("Y\0\x01\0\x04", 5);
  std::mt19937 rng(5);
  for (int i = 0; i < 1000; ++i) s.push_back(static_cast<char>(rng()));
  AppendReset(s, FrameType::kMuxReset, "x", kSyncPadBytes);
  AppendChannelClose(s, 3);
  PortDecoder d(PortDecoder::Sender::kHost);
  d.set_strict(true);
  auto f = DecodePort(d, s, s.size());
  ASSERT_GE(f.size(), 2u);
  EXPECT_EQ(f[f.size() - 2].type, FrameType::kMuxReset);
  EXPECT_EQ(f[f.size() - 2].payload, "x");
  EXPECT_EQ(f.back().type, FrameType::kChannelClose);
}

TEST(PortDecoderTest, OutOfStepBytesAreCountedAndResetDropsAPartialFrame) {
  PortDecoder d(PortDecoder::Sender::kHost);
  d.set_strict(true);
  d.Feed("EEE");
  d.Feed(std::string("E\0\0\0\0", 5));  // E is not sent on a port with channels
  EXPECT_FALSE(d.Next());
  EXPECT_EQ(d.TakeSkipped(), 4u);
  EXPECT_EQ(d.TakeSkipped(), 0u);
  d.Feed(std::string("Y\0\0\0\x09\0\0\0\x01", 9));  // half a Y
  EXPECT_EQ(d.buffered(), 9u);
  d.Reset();
  EXPECT_EQ(d.buffered(), 0u);
  std::string z;
  AppendChannelClose(z, 2);
  d.Feed(z);
  auto f = d.Next();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kChannelClose);
}

}  // namespace
}  // namespace wb::proto
