// libtmix: the C client of tmixd. A trainer connects to the daemon's endpoint, names its
// consumer group, and pulls mixed batches (images with their sources, labels and label
// weights) one after another; releasing a batch acknowledges it to the daemon with the next
// request. The wire protocol is proto/tmix.proto over a nanomsg REQ socket.
//
//     tmix_client *c;
//     tmix_options o;
//     tmix_options_init(&o);
//     o.group = "resnet-run-3";
//     if (tmix_connect(&c, "ipc:///run/user/1000/tmix/tmixd.sock", &o) < 0)
//         die(tmix_client_error(NULL));
//     for (;;) {
//         tmix_batch *b;
//         if (tmix_next(c, &b) < 0)
//             die(tmix_client_error(c));
//         train_step(b->images, b->labels, b->weights, b->size, b->mix_n);
//         tmix_release(c, b);
//     }
//     tmix_close(c);
//
// Every function that can fail returns 0 or a negative TMIX_E* code; the sentence that says
// what failed (starting with the endpoint) is in tmix_client_error(). A client is used by one
// thread at a time; different clients (and tmix_status) may be used from different threads.
#ifndef TMIX_CLIENT_H
#define TMIX_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Error codes. Those that tmixd's core also has (EINVAL, ENOMEM, EIO, ENOTSUP) keep its
// numbers; the ones only a client meets start at -20. The daemon's Error codes map to
// EVERSION, EBADREQ, ENOTSUP, EBUSY, ESERVER (UNKNOWN, INTERNAL), ESESSION, ETOOLARGE and
// ESHUTDOWN.
// clang-format off
#define TMIX_CLIENT_ERRORS(X)                                                        \
    X(OK,        0,   "success")                                                     \
    X(EINVAL,    -1,  "invalid argument")                                            \
    X(ENOMEM,    -5,  "out of memory")                                               \
    X(EIO,       -6,  "socket error")                                                \
    X(ENOTSUP,   -8,  "not supported by the daemon")                                 \
    X(ETIMEDOUT, -20, "timed out waiting for the daemon")                            \
    X(EPROTO,    -21, "malformed or unexpected reply from the daemon")               \
    X(ESERVER,   -22, "the daemon failed to serve the request")                      \
    X(EVERSION,  -23, "the daemon speaks another protocol version")                  \
    X(EBADREQ,   -24, "the daemon refused the request")                              \
    X(EBUSY,     -25, "the daemon is at a limit (trainers, groups)")                 \
    X(ESESSION,  -26, "the daemon does not know the session")                        \
    X(ETOOLARGE, -27, "request larger than the daemon accepts")                      \
    X(ESHUTDOWN, -28, "the daemon is shutting down")                                 \
    X(ESHM,      -29, "cannot map the daemon's shared memory")
// clang-format on

typedef enum {
#define TMIX_CLIENT_ERR_ENUM(name, code, text) TMIX_##name = code,
    TMIX_CLIENT_ERRORS(TMIX_CLIENT_ERR_ENUM)
#undef TMIX_CLIENT_ERR_ENUM
} tmix_error;

// "invalid argument" / "TMIX_EINVAL" for a code of the table; "unknown error" /
// "TMIX_E?" for any other number.
const char *tmix_strerror(int err);
const char *tmix_err_name(int err);

// Consumer group modes, output dtypes and layouts: the values of proto GroupMode, DType and
// Layout. DEFAULT (0) asks for the daemon's configured choice; Welcome says which it is.
enum { TMIX_MODE_DEFAULT = 0, TMIX_MODE_SHARD = 1, TMIX_MODE_BROADCAST = 2 };
enum {
    TMIX_DTYPE_DEFAULT = 0,
    TMIX_DTYPE_FLOAT32 = 1,
    TMIX_DTYPE_FLOAT16 = 2,
    TMIX_DTYPE_UINT8 = 3
};
enum { TMIX_LAYOUT_DEFAULT = 0, TMIX_LAYOUT_NCHW = 1, TMIX_LAYOUT_NHWC = 2 };
// How the images reach the trainer (proto Delivery). INLINE: inside each Batch message (the
// only kind over tcp://). SHM: in a slot of the group's ring in POSIX shared memory, which
// the client maps read-only once; a batch's images are read in place, with no copy, and the
// slot is not reused before the batch is released (or its lease expires). CUDA: in a slot
// of device memory on the daemon's GPU, shared by CUDA IPC (see tmix_batch); the trainer
// names that GPU (tmix_options.cuda_pci_bus_id, else cuda_device).
enum {
    TMIX_DELIVERY_DEFAULT = 0,
    TMIX_DELIVERY_INLINE = 1,
    TMIX_DELIVERY_SHM = 2,
    TMIX_DELIVERY_CUDA = 3
};

// "shard", "float16", "nhwc", "default"...; "?" for a value out of range.
const char *tmix_mode_name(int mode);
const char *tmix_dtype_name(int dtype);
const char *tmix_layout_name(int layout);
const char *tmix_delivery_name(int delivery);

// Bytes per element of an output dtype (4, 2, 1); 0 for DEFAULT or out of range.
size_t tmix_dtype_size(int dtype);

// What a trainer asks for in its Hello.
typedef struct {
    const char *group;   // consumer group, [A-Za-z0-9._-]{1,64}; NULL means "default"
    int mode;            // TMIX_MODE_*
    uint32_t batch_size; // 0: the daemon's default
    int dtype;           // TMIX_DTYPE_*
    int layout;          // TMIX_LAYOUT_*
    int timeout_ms;      // how long one request waits for its reply; 0: forever
    int delivery;        // TMIX_DELIVERY_*; DEFAULT is INLINE
    uint64_t start;      // broadcast: the stream position (epoch * batches_per_epoch + index)
                         // of the first batch; a resumed trainer passes where it stopped
    int cuda_device;     // CUDA delivery: the trainer's GPU (its ordinal), the daemon's
    // Several machines, a daemon on each: this node's rank and the node count (0: one node).
    // Every epoch is cut into node_count contiguous parts of the order the daemons share
    // (same [server] seed and data set); the daemon serves part node_rank.
    uint32_t node_rank, node_count;
    // CUDA delivery: the trainer's GPU by PCI bus id (cudaDeviceGetPCIBusId), or NULL.
    // Ordinals follow each process's CUDA_VISIBLE_DEVICES; a bus id names the GPU alike in
    // all, so when given it is what the daemon compares (a daemon too old to say its own is
    // compared by ordinal).
    const char *cuda_pci_bus_id;
} tmix_options;

// Group "default", every choice the daemon's, a 60 s timeout.
void tmix_options_init(tmix_options *o);

typedef struct tmix_client tmix_client;

// Opens a REQ socket to `endpoint` (ipc://PATH or tcp://HOST:PORT) and says Hello with `o`
// (NULL: tmix_options_init's defaults); on Welcome stores a new client in *out. On failure
// *out is NULL and tmix_client_error(NULL) says why on this thread: TMIX_EINVAL for a bad
// endpoint or option, TMIX_ETIMEDOUT when nothing answers within o->timeout_ms,
// TMIX_EPROTO for a reply that is not a valid Welcome, or the daemon's refusal (EBUSY,
// EBADREQ, EVERSION...).
int tmix_connect(tmix_client **out, const char *endpoint, const tmix_options *o);

// What the daemon resolved in its Welcome. Valid until tmix_close; the client updates it in
// place when it says Hello again after the daemon forgot the session (see tmix_next), so do
// not keep `method` across tmix_next calls.
typedef struct {
    uint64_t session_id;
    uint32_t channels, height, width; // of one output image
    uint32_t classes;
    uint32_t mix_n;      // sources per mixed sample (n)
    uint32_t batch_size; // the group's; an epoch's last batch may be smaller
    uint64_t epoch_size; // samples per epoch
    uint64_t batches_per_epoch;
    int mode, dtype, layout; // as resolved: never DEFAULT
    const char *method;      // "mixup", "transformmix"...
    int delivery;            // TMIX_DELIVERY_INLINE or _SHM
    // SHM: the mapping of the group's ring (read-only); every batch's images lie inside it.
    const char *shm_name;    // "" for INLINE
    const void *shm_base;
    size_t shm_bytes;
    int cuda_device;     // CUDA: the GPU holding the slots, as the daemon numbers it
    uint32_t cuda_slots; // CUDA: slots of the group's device ring
    // Float outputs are (pixel / 255 - mean[c]) / std[c] for channel c < channels (at most
    // 3): normalise the trainer's own test images the same way.
    float mean[3], std[3];
    char cuda_pci_bus_id[32]; // CUDA: the GPU holding the slots, by PCI bus id ("" if the
                              // daemon did not say)
} tmix_info;

const tmix_info *tmix_get_info(const tmix_client *c);

// One mixed batch of N = size samples, each mixed from n = mix_n sources. Every pointer is
// owned by the client and valid until the batch is released (or the client closed).
typedef struct tmix_batch {
    uint64_t sequence;            // 1, 2, ... within the client's session
    uint64_t epoch, index;        // batch `index` of epoch `epoch` of the group's stream
    int dtype, layout;            // TMIX_DTYPE_*, TMIX_LAYOUT_*, as in the Welcome
    uint32_t ndim;                // 4
    int64_t shape[4];             // (N, C, H, W) for NCHW, (N, H, W, C) for NHWC
    const void *images;           // shape, dtype; float32/float16 normalised, uint8 pixels;
                                  // SHM: in the ring (read-only), unless all its slots were
                                  // taken, when the daemon sends the images inline
    size_t images_bytes;          // N * C * H * W * tmix_dtype_size(dtype)
    uint32_t size, mix_n;         // N, n
    const uint64_t *sample_ids;   // (N)
    const uint64_t *sources;      // (N, n) sample ids, row-major; sources[i*n] = sample_ids[i]
    const uint32_t *labels;       // (N, n) labels of the sources
    const float *weights;         // (N, n) label weights, each row sums to 1
    const uint64_t *replaced_ids; // (replaced_count) unreadable samples replaced by others
    size_t replaced_count;
    // CUDA delivery with cuda_in_slot set (images is then NULL): the images lie at the start
    // of device slot cuda_slot on the daemon's GPU (info's cuda_pci_bus_id; cuda_device is the
    // daemon's ordinal, not necessarily the trainer's). With that GPU current, open cuda_mem
    // with cudaIpcOpenMemHandle and cuda_event with cudaIpcOpenEventHandle, once per slot
    // (the same slot always comes with the same handles within a session), and make the
    // stream that reads the images wait for the event (cudaStreamWaitEvent): it is recorded
    // after their copy. Release the batch only when the GPU work reading the slot is done (an
    // event recorded after it has completed): the daemon copies the next batch into the slot
    // as soon as it is released.
    // When every slot was taken the daemon sends the images inline: cuda_in_slot is 0 and
    // images points to host memory as for INLINE.
    int cuda_in_slot;
    uint32_t cuda_slot;
    unsigned char cuda_mem[64], cuda_event[64];
} tmix_batch;

// Returns the next batch, waiting up to the timeout for it; on success *out holds it. Before
// returning it asks for the batch after it (when the request can go at once: see
// client/README.md), so that the daemon's answer is waiting at the next call instead of a
// round trip; an answer that waited more than half the daemon's lease is asked for again
// (the session may have expired). The request acknowledges every batch released before it
// went (through the highest sequence below which all are released). When the daemon no
// longer knows the session (it restarted, or the session expired) the client says Hello
// again with the same options and asks once more.
// Batches held from the old session are still readable, but a slot's contents (shm, cuda) are
// the old session's batch only if the daemon restarted (shm) or did not reuse the slot: a
// session silent for longer than the lease (Welcome) loses its slots to other batches, and
// the batches come again to the group. Errors: TMIX_ETIMEDOUT,
// TMIX_EPROTO for a batch that contradicts its own shape or the Welcome, and the daemon's
// refusals; calling again after a failure asks for the same batch again.
int tmix_next(tmix_client *c, tmix_batch **out);

// Whether tmix_next asks for the batch after the one it returns (ahead != 0, the default).
// A trainer that takes a known number of batches turns it off before its last tmix_next,
// so that no batch waits leased to it, unused, until its tmix_close. 0, or TMIX_EINVAL for
// a NULL c.
int tmix_set_ahead(tmix_client *c, int ahead);

// Gives b back to the client (its memory is freed); the next request acknowledges it.
// TMIX_EINVAL when b is not a batch this client holds (released already, another client's).
int tmix_release(tmix_client *c, tmix_batch *b);

// Closes the socket and frees the client with every batch not yet released. NULL: no-op.
void tmix_close(tmix_client *c);

// The sentence that says what the last failing call on c did wrong, starting with the
// endpoint (e.g. the daemon's Error message); "" if nothing failed. With c NULL: the last
// failure of tmix_connect or tmix_status on the calling thread.
const char *tmix_client_error(const tmix_client *c);

// The daemon's answer to a StatusRequest. Strings and arrays live as long as the struct.
typedef struct {
    const char *name;
    int mode;
    uint32_t members, batch_size;
    uint64_t epoch;        // the epoch of the oldest unfinished batch
    uint64_t batches_done; // acknowledged in that epoch
    uint64_t batches_per_epoch;
    uint64_t batches_served; // since the daemon started
    uint32_t shm_slots;      // the group's shared-memory ring (0: none)
    uint32_t shm_slots_used; // slots holding a batch not acknowledged yet
    uint32_t cuda_slots;     // the group's GPU ring (0: none)
    uint32_t cuda_slots_used;
    uint64_t images_served;
    uint32_t batches_ready;     // produced for the group and not yet taken
    uint32_t batches_producing; // with the workers
    uint32_t node_rank, node_count; // the group's part of each epoch (count 1: all of it)
} tmix_group_status;

typedef struct {
    const char *version;
    uint64_t uptime_s;
    uint32_t trainers;
    uint64_t batches_served;
    const char *backend;
    const char *dataset; // format:path (split)
    uint64_t dataset_size;
    const char *method;
    uint64_t bad_samples;  // unreadable samples replaced so far
    uint64_t memory_bytes; // batch memory in use
    size_t group_count;
    const tmix_group_status *groups; // (group_count)
    uint64_t max_memory_bytes;       // the batch memory's budget
    uint32_t producer_jobs;          // batches queued for or being made by the workers
    uint64_t gpu_memory_used, gpu_memory_total; // the daemon's GPU, every process (0, 0: none)
    double next_p50_s, next_p99_s;   // seconds from a Next to its batch (bucket upper bounds)
    double read_mean_s, mix_mean_s;  // seconds per batch, mean: reading, mixing
} tmix_server_status;

// Asks the daemon at `endpoint` for its status (no session needed), waiting up to
// timeout_ms (0: forever). On success *out is freed with tmix_status_free; on failure it is
// NULL and tmix_client_error(NULL) says why.
int tmix_status(const char *endpoint, int timeout_ms, tmix_server_status **out);
void tmix_status_free(tmix_server_status *s);

// One batch mixed with every intermediate kept (tmix_preview_get): float images normalised
// as batches are, (pixel / 255 - mean[c]) / std[c].
typedef struct {
    uint32_t samples, mix_n, channels, height, width;
    const char *method;
    const float *inputs;  // samples x C x H x W: the batch before mixing
    const float *cams;    // samples x H x W in [0, 1]; NULL without a teacher
    const float *warped;  // samples x n x C x H x W: each mixed sample's sources, warped
    const float *masks;   // samples x n x H x W: each source's share of each pixel
    const float *mixed;   // samples x C x H x W
    const uint32_t *source_rows; // samples x n: the row of inputs each source is
    const uint32_t *labels;      // samples x n
    const float *weights;        // samples x n: the label weights
    float mean[3], std[3];
} tmix_preview;

// Asks the daemon to mix one batch of `samples` (1 to 32; 0: 8) and send its intermediates
// (each call another batch of the data set). On success *out is freed with
// tmix_preview_free; on failure it is NULL and tmix_client_error(NULL) says why.
int tmix_preview_get(const char *endpoint, uint32_t samples, int timeout_ms, tmix_preview **out);
void tmix_preview_free(tmix_preview *p);

// One setting of the daemon: "section.key", its value as a config file would say it, and
// whether tmix_config_set may change it while the daemon runs.
typedef struct {
    const char *key;
    const char *value;
    int reloadable;
} tmix_setting;

typedef struct {
    size_t count;
    const tmix_setting *settings; // in the daemon's table order
} tmix_config;

// The daemon's settings (no session needed): every one when key is NULL, else that one
// (TMIX_EBADREQ naming it when the daemon has none of that name). On success *out is freed
// with tmix_config_free; on failure it is NULL and tmix_client_error(NULL) says why.
int tmix_config_get(const char *endpoint, const char *key, int timeout_ms, tmix_config **out);
void tmix_config_free(tmix_config *c);

// Changes a reloadable setting of the running daemon, which checks the value as it would in
// its config file and applies it at once. Refused (the daemon's message in
// tmix_client_error(NULL)) for a fixed setting, a bad value, and over tcp:// (only the
// ipc:// socket, whose file mode says who may, changes settings).
int tmix_config_set(const char *endpoint, const char *key, const char *value, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
