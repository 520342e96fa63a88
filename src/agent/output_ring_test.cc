#include "agent/output_ring.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wb::agent {
namespace {

// What Read emits, as "O:bytes" / "R:bytes" runs.
std::vector<std::string> ReadAll(const OutputRing& r, uint64_t from, uint64_t max = ~0ull,
                                 uint64_t* next = nullptr) {
  std::vector<std::string> out;
  uint64_t n = r.Read(from, max, [&](bool err, std::string_view b) {
    std::string tag = err ? "R:" : "O:";
    // Adjacent pieces of one run (split at the wrap) are joined.
    if (!out.empty() && out.back().compare(0, 2, tag) == 0) {
      out.back() += b;
    } else {
      out.push_back(tag + std::string(b));
    }
  });
  if (next) *next = n;
  return out;
}

using V = std::vector<std::string>;

TEST(OutputRingTest, KeepsStreamsInOrder) {
  OutputRing r(64);
  EXPECT_EQ(r.held(), 0u);
  r.Append(false, "out1 ");
  r.Append(true, "err ");
  r.Append(false, "out2");
  EXPECT_EQ(r.start(), 0u);
  EXPECT_EQ(r.end(), 13u);
  EXPECT_EQ(ReadAll(r, 0), (V{"O:out1 ", "R:err ", "O:out2"}));
  EXPECT_EQ(ReadAll(r, 7), (V{"R:r ", "O:out2"}));
  EXPECT_EQ(ReadAll(r, 13), V{});
  EXPECT_EQ(r.held(), 13u);  // grows with the output, not to capacity at once
}

TEST(OutputRingTest, OverflowKeepsTheNewestBytes) {
  OutputRing r(10);
  r.Append(false, "0123456");
  r.Append(true, "789abcdef");  // 16 bytes in all: 6 are gone
  EXPECT_EQ(r.start(), 6u);
  EXPECT_EQ(r.end(), 16u);
  EXPECT_EQ(ReadAll(r, 0), (V{"O:6", "R:789abcdef"}));  // from before start: clamped
  EXPECT_EQ(ReadAll(r, 9), (V{"R:9abcdef"}));
  EXPECT_EQ(r.held(), 10u);
}

TEST(OutputRingTest, AppendLargerThanCapacity) {
  OutputRing r(4);
  r.Append(false, "ab");
  r.Append(true, "0123456789");
  EXPECT_EQ(r.start(), 8u);
  EXPECT_EQ(r.end(), 12u);
  EXPECT_EQ(ReadAll(r, 0), (V{"R:6789"}));
}

TEST(OutputRingTest, ReadIsBoundedAndResumable) {
  OutputRing r(8);
  r.Append(false, "abcdefgh");
  r.Append(false, "ij");  // wraps
  uint64_t next = 0;
  EXPECT_EQ(ReadAll(r, 0, 3, &next), (V{"O:cde"}));
  EXPECT_EQ(next, 5u);
  EXPECT_EQ(ReadAll(r, next, 100, &next), (V{"O:fghij"}));
  EXPECT_EQ(next, 10u);
}

TEST(OutputRingTest, ManyRunsAcrossWraps) {
  OutputRing r(16);
  std::string all, streams;  // each byte, and the stream that wrote it
  for (int i = 0; i < 100; ++i) {
    std::string chunk(static_cast<size_t>(i % 5 + 1), static_cast<char>('a' + i % 26));
    r.Append(i % 2, chunk);
    all += chunk;
    streams += std::string(chunk.size(), i % 2 ? 'R' : 'O');
  }
  EXPECT_EQ(r.end(), all.size());
  std::string got, got_streams;
  r.Read(0, ~0ull, [&](bool err, std::string_view b) {
    got += b;
    got_streams += std::string(b.size(), err ? 'R' : 'O');
  });
  EXPECT_EQ(got, all.substr(all.size() - 16));
  EXPECT_EQ(got_streams, streams.substr(streams.size() - 16));
}

TEST(OutputRingTest, ReleaseForgetsBytesButNotOffsets) {
  OutputRing r(8);
  r.Append(false, "hello");
  r.Release();
  EXPECT_EQ(r.start(), 5u);
  EXPECT_EQ(r.end(), 5u);
  EXPECT_EQ(r.held(), 0u);
  EXPECT_EQ(ReadAll(r, 0), V{});
  r.Append(true, "x");
  EXPECT_EQ(ReadAll(r, 0), (V{"R:x"}));
}

}  // namespace
}  // namespace wb::agent
