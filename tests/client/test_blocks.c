// libtmix's allocator of replies (client/blocks.c), built into this program: large blocks
// (the images of inline batches) come back for reuse when freed, up to 4, the oldest given
// back first; small ones do not; an unpacked reply's images land in a kept block.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "test_main.h"

enum { MIB = 1 << 20 };

static void *alloc(size_t size) { return tmixi_allocator.alloc(NULL, size); }
static void release(void *p) { tmixi_allocator.free(NULL, p); }

static int reused(void)
{
    tmixi_blocks_drop();
    char *p = alloc(3 * MIB);
    CHECK(p && (uintptr_t)p % 16 == 0);
    memset(p, 7, 3 * MIB);
    release(p);
    CHECK(tmixi_blocks_kept() == 1);
    char *big = alloc(8 * MIB);
    CHECK(big && big != p); // not in a 3 MiB block
    release(big);           // kept too, now
    CHECK(tmixi_blocks_kept() == 2);
    char *q = alloc(2 * MIB); // within twice: the same block, its bytes as they were
    CHECK(q == p && q[0] == 7 && tmixi_blocks_kept() == 1);
    release(q);
    char *small = alloc(MIB / 2);
    CHECK(small && (uintptr_t)small % 16 == 0);
    release(small);
    CHECK(tmixi_blocks_kept() == 2); // small blocks are not kept
    char *r = alloc(MIB); // more than twice smaller than the kept block: a new one
    CHECK(r && r != p);
    release(r);
    tmixi_blocks_drop();
    return 0;
}

static int oldest_given_back(void)
{
    tmixi_blocks_drop();
    char *p[6];
    for (int i = 0; i < 6; i++)
        CHECK((p[i] = alloc((size_t)(i + 1) * MIB)) != NULL);
    for (int i = 0; i < 6; i++)
        release(p[i]);
    CHECK(tmixi_blocks_kept() == 4); // 3, 4, 5 and 6 MiB; 1 and 2 went
    char *six = alloc(6 * MIB), *three = alloc(3 * MIB);
    CHECK(six == p[5] && three == p[2]);
    char *fresh = alloc(MIB + MIB / 2); // 4 and 5 MiB are more than twice that
    CHECK(fresh != p[3] && fresh != p[4] && tmixi_blocks_kept() == 2);
    release(fresh);
    release(six);
    release(three);
    tmixi_blocks_drop();
    return 0;
}

// A reply carrying 2 MiB of images, unpacked and freed twice: the second's images are
// where the first's were.
static int reply_images_reused(void)
{
    tmixi_blocks_drop();
    static uint8_t images[2 * MIB];
    Tmix__Batch b = TMIX__BATCH__INIT;
    b.sequence = 1;
    b.images = (ProtobufCBinaryData){sizeof images, images};
    Tmix__Envelope env = TMIX__ENVELOPE__INIT;
    env.body_case = TMIX__ENVELOPE__BODY_BATCH;
    env.batch = &b;
    const size_t len = tmix__envelope__get_packed_size(&env);
    uint8_t *packed = malloc(len);
    CHECK(packed);
    tmix__envelope__pack(&env, packed);
    const void *first = NULL;
    for (int round = 0; round < 2; round++) {
        Tmix__Envelope *got = tmix__envelope__unpack(&tmixi_allocator, len, packed);
        CHECK(got && got->batch && got->batch->images.len == sizeof images);
        CHECK(round == 0 || got->batch->images.data == first);
        first = got->batch->images.data;
        tmixi_envelope_free(got);
        CHECK(tmixi_blocks_kept() == 1);
    }
    free(packed);
    tmixi_blocks_drop();
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case tests[] = {
        {"blocks.reused", reused},
        {"blocks.oldest_given_back", oldest_given_back},
        {"blocks.reply_images_reused", reply_images_reused},
        {NULL, NULL},
    };
    return test_main(argc, argv, tests);
}
