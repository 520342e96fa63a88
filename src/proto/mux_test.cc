// Channel frames over a VM's port (proto/mux.h).
#include "proto/mux.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace wb::proto
