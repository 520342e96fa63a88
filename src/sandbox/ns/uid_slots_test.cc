// The uid slot planning (pure) and the claims on disk (a temp state dir; no root).
#include "sandbox/ns/uid_slots.h"

#include <gtest/gtest.h>

#include "base/fs.h"
#include "sandbox/sandbox_dir.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb {
namespace {

TEST(UidSlotsTest, LowestFreeSlotSkipsLiveClaimsAndDropsStaleOnes) {
  auto p = PlanUidSlot({{1, "a"}, {2, "gone"}, {3, "c"}}, {"a", "c"}, 4);
  ASSERT_OK(p);
  EXPECT_EQ(p->slot, 2u);  // held by a sandbox whose dir is gone: free again
  EXPECT_EQ(p->stale, std::vector<uint32_t>{2});
  auto first = PlanUidSlot({}, {}, 4);
  ASSERT_OK(first);
  EXPECT_EQ(first->slot, 1u);  // slot 0 is the store's, never a sandbox's
}

TEST(UidSlotsTest, AllSlotsHeldIsResourceExhausted) {
  auto p = PlanUidSlot({{1, "a"}, {2, "b"}}, {"a", "b"}, 2);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(p.error().ToString().find("--uid-slots"), std::string::npos);
  EXPECT_FALSE(PlanUidSlot({}, {}, 0).ok());  // shared mode claims nothing
}

TEST(UidSlotsTest, SpanAndBases) {
  EXPECT_EQ(SlotBase(1000000000, 0), 1000000000u);
  EXPECT_EQ(SlotBase(1000000000, 3), 1000000000u + 3 * 65536);
  EXPECT_EQ(UidSpan(kDefaultUidSlots), 129ull * 65536);
  EXPECT_LE(UidSpan(kDefaultUidSlots), 10000000u);  // fits a test binary's range
  EXPECT_OK(CheckUidSlots(1000000000, kDefaultUidSlots));
  auto bad = CheckUidSlots(4294900000u, 10);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(UidSlotsTest, ParseUidSlotNamesTheFile) {
  auto v = ParseUidSlot("7\n", "x/uid_slot");
  ASSERT_OK(v);
  EXPECT_EQ(*v, 7u);
  for (const char* bad : {"", "0", "-1", "abc", "70000"}) {
    auto r = ParseUidSlot(bad, "x/uid_slot");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().ToString().find("x/uid_slot"), std::string::npos);
  }
}

TEST(UidSlotsTest, ClaimsOnDiskAreExclusiveReleasedAndSwept) {
  std::string state = wb::testing::MakeTempDir("wb-uid-slots");
  ASSERT_FALSE(state.empty());
  ASSERT_OK(MkdirAll(SandboxesDir(state)));
  auto mk = [&](const std::string& id) {
    std::string d = SandboxesDir(state) + "/" + id;
    EXPECT_OK(MkdirAll(d));
    return d;
  };
  std::string a = mk("aaaa"), b = mk("bbbb"), c = mk("cccc");
  auto sa = ClaimUidSlot(state, 2, "aaaa", a);
  auto sb = ClaimUidSlot(state, 2, "bbbb", b);
  ASSERT_OK(sa);
  ASSERT_OK(sb);
  EXPECT_EQ(*sa, 1u);
  EXPECT_EQ(*sb, 2u);
  EXPECT_FALSE(ClaimUidSlot(state, 2, "cccc", c).ok());  // both held
  // Adoption (the next daemon) finds the recorded slot, and only its own.
  auto again = AdoptUidSlot(state, "bbbb", b);
  ASSERT_OK(again);
  EXPECT_EQ(*again, 2u);
  ASSERT_OK(WriteFileAtomic(c + "/uid_slot", "2\n"));
  EXPECT_FALSE(AdoptUidSlot(state, "cccc", c).ok());
  // Released: the slot is free again.
  ASSERT_OK(ReleaseUidSlot(state, 1, "aaaa"));
  auto sc = ClaimUidSlot(state, 2, "cccc", c);
  ASSERT_OK(sc);
  EXPECT_EQ(*sc, 1u);
  // A release by a sandbox that no longer holds the slot changes nothing.
  ASSERT_OK(ReleaseUidSlot(state, 1, "aaaa"));
  EXPECT_FALSE(ClaimUidSlot(state, 2, "dddd", mk("dddd")).ok());
  // A crashed sandbox's dir removed (gc): its claim is swept.
  ASSERT_OK(RemoveTree(b));
  EXPECT_EQ(SweepUidSlots(state), 1u);
  EXPECT_FALSE(PathExists(UidSlotsDir(state) + "/2"));
  EXPECT_OK(RemoveTree(state));
}

}  // namespace
}  // namespace wb
