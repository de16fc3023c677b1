// The one table of tmixd's settings. Every row makes a field of tmixd_config (named
// section_key), a key of the config file ([section] key = value), a command-line override
// (--section.key=value), a block of `tmixd serve --print-config` and of deploy/tmixd.conf.
// Rows, by type (defaults are text, parsed like a value from the file):
//   STR(section, key, default, reload, doc)                      char *
//   INT(section, key, default, min, max, reload, doc)            int in [min, max]
//   U64(section, key, default, reload, doc)                      uint64_t
//   DBL(section, key, default, GE|GT, min, max, reload, doc)     double in [min, max] / (min, max]
//   BOOL(section, key, default, reload, doc)                     true/false yes/no on/off 1/0
//   ENUM(section, key, ctype, WORDS, default, reload, doc)       ctype, from the list WORDS
//   FLOATS(section, key, default, GE|GT, min, max, reload, doc)  comma-separated floats or auto
// reload: RELOAD when the setting may change while tmixd runs, FIXED otherwise.
#ifndef TMIXD_SETTINGS_H
#define TMIXD_SETTINGS_H

#include <math.h>

#include "log.h" // TMIXD_LOG_LEVELS
#include "mix.h" // TMIX_METHODS

// Word lists of the enum settings: W(ID, "word") makes the constant TMIXD_ID.
#define TMIXD_DATASET_FORMATS(W)                                                       \
    W(FORMAT_IDX, "idx") W(FORMAT_CIFAR, "cifar") W(FORMAT_IMAGEFOLDER, "imagefolder")
#define TMIXD_SPLITS(W) W(SPLIT_TRAIN, "train") W(SPLIT_TEST, "test")
#define TMIXD_CROPS(W)                                                                 \
    W(AUGMENT_CROP_NONE, "none") W(AUGMENT_CROP_PAD, "pad")                          \
    W(AUGMENT_CROP_RANDOM_RESIZED, "random-resized")
#define TMIXD_DTYPES(W) W(DTYPE_FLOAT32, "float32") W(DTYPE_FLOAT16, "float16") W(DTYPE_UINT8, "uint8")
#define TMIXD_LAYOUTS(W) W(LAYOUT_NCHW, "nchw") W(LAYOUT_NHWC, "nhwc")
#define TMIXD_PRECISIONS(W) \
    W(PRECISION_FP32, "fp32") W(PRECISION_TF32, "tf32") W(PRECISION_BF16, "bf16")

#define TMIXD_SETTINGS(STR, INT, U64, DBL, BOOL, ENUM, FLOATS)                                     \
    STR(server, endpoint, "", FIXED,                                                               \
        "Where trainers connect: ipc://PATH or tcp://HOST:PORT; empty = "                          \
        "ipc://$XDG_RUNTIME_DIR/tmix/tmixd.sock (as root ipc:///run/tmix/tmixd.sock).")            \
    STR(server, state_dir, "", FIXED,                                                              \
        "Where consumer-group progress is saved; empty = $XDG_STATE_HOME/tmix, else "              \
        "$HOME/.local/state/tmix (as root /var/lib/tmix).")                                        \
    INT(server, max_memory_mb, 1024, 16, 1048576, FIXED,                                           \
        "Upper bound on the memory of all pipeline buffers, in MiB.")                              \
    U64(server, seed, 0, FIXED,                                                                    \
        "Seed of every random draw: batch k of epoch e depends only on (seed, e, k).")             \
    STR(server, device, "auto", FIXED,                                                             \
        "Where batches are normalised and mixed: auto = the first GPU when there is one (else "    \
        "the CPU, said in the log), cpu, cuda or cuda:N.")                                         \
    INT(server, workers, 0, 0, 256, FIXED, "Decode and augment threads; 0 = one per core.")        \
    INT(server, prefetch, 0, 0, 1024, FIXED,                                                       \
        "Batches produced ahead, per consumer group (per member in broadcast); 0 = workers + 2, "  \
        "enough to keep every worker busy for one group.")                                         \
    DBL(server, lease_timeout_s, 60, GE, 0.1, 86400, RELOAD,                                       \
        "Seconds a trainer may hold a batch before it goes to another member of its group.")      \
    DBL(server, stall_timeout_s, 120, GE, 0, 86400, RELOAD,                                       \
        "Seconds batch production may go without finishing a batch while it has work (a GPU or "  \
        "a data read that hangs) before tmixd saves its progress and exits 1, for its "            \
        "supervisor to start it again; 0 = never.")                                                \
    INT(server, max_trainers, 64, 1, 4096, FIXED, "Most trainers connected at once.")              \
    INT(server, max_batch_size, 65536, 1, 65536, FIXED,                                            \
        "Largest batch a trainer may ask for in its Hello; a larger one is refused.")              \
    INT(server, max_request_bytes, 65536, 1024, 16777216, FIXED,                                   \
        "Largest request accepted, in bytes; a larger one gets an error reply.")                   \
    INT(server, metrics_port, 0, 0, 65535, FIXED,                                                  \
        "Port of the Prometheus metrics, http://127.0.0.1:PORT/metrics; 0 = none.")                \
    ENUM(server, log_level, tmixd_log_level, TMIXD_LOG_LEVELS, "info", RELOAD,                     \
         "Least severe message written to the log.")                                               \
    STR(server, log_file, "", FIXED,                                                               \
        "Log file, opened for append and reopened on SIGHUP; empty = stderr.")                     \
    ENUM(dataset, format, tmixd_dataset_format, TMIXD_DATASET_FORMATS, "idx", FIXED,               \
         "idx: MNIST / Fashion-MNIST files; cifar: CIFAR-10/100 binary; imagefolder: "             \
         "path/CLASS/*.jpg|*.jpeg|*.png.")                                                         \
    STR(dataset, path, "/usr/share/datasets/fashion-mnist", FIXED, "Directory of the data set.")   \
    ENUM(dataset, split, tmixd_split, TMIXD_SPLITS, "train", FIXED, "The split served.")           \
    INT(augment, size, 0, 0, 4096, FIXED,                                                          \
        "Output height = width, in pixels; 0 = the data set's native size.")                       \
    ENUM(augment, crop, tmixd_crop, TMIXD_CROPS, "none", FIXED,                                    \
         "none; pad: pad by [augment] pad, then a random crop; random-resized: a random crop "     \
         "of area fraction [scale_min, scale_max], resized.")                                      \
    INT(augment, pad, 4, 0, 1024, FIXED, "Padding in pixels of crop = pad.")                       \
    BOOL(augment, flip, true, FIXED, "Random horizontal flip.")                                    \
    DBL(augment, scale_min, 0.08, GT, 0, 1, FIXED,                                                 \
        "Smallest area fraction of a random-resized crop.")                                        \
    DBL(augment, scale_max, 1, GT, 0, 1, FIXED,                                                  \
        "Largest area fraction of a random-resized crop.")                                         \
    FLOATS(augment, mean, "auto", GE, -HUGE_VAL, HUGE_VAL, FIXED,                                  \
           "Per-channel mean subtracted from images in [0, 1]; auto = the teacher's, else 0.5.")  \
    FLOATS(augment, std, "auto", GT, 0, HUGE_VAL, FIXED,                                           \
           "Per-channel standard deviation divided by after the mean; auto = the teacher's, "     \
           "else 0.5.")                                                                             \
    ENUM(mix, method, tmix_method, TMIX_METHODS, "mixup", FIXED,                                   \
         "Mixing method; softmax-cam, stn-only, mpn-only and transformmix use [teacher] path.")    \
    STR(mix, module, "", FIXED,                                                                    \
        "Trained mixing module (safetensors from search mode) for stn-only, mpn-only and "         \
        "transformmix.")                                                                           \
    DBL(mix, alpha, 1, GE, 0.001, 1000, FIXED,                                                   \
        "Concentration of the mixing weights: Dirichlet(alpha), Beta(alpha, alpha) for n = 2.")   \
    INT(mix, n, 2, 2, 3, FIXED, "Images mixed into each output image.")                            \
    ENUM(mix, precision, tmixd_precision, TMIXD_PRECISIONS, "fp32", FIXED,                          \
         "Arithmetic of the convolutions on a GPU (the teacher's, and the mixing module's): fp32; " \
         "tf32 (tensor cores); or bf16 (forward passes on bf16 tensor cores, gradients in tf32). " \
         "The CPU computes fp32.")                                                                  \
    BOOL(mix, graphs, true, FIXED,                                                                 \
         "On a GPU, replay each lane's mix as one CUDA graph launch once a batch shape repeats; "  \
         "false launches every op of every batch on its own.")                                     \
    INT(mix, lanes, 0, 0, 64, FIXED,                                                               \
        "Batches mixed at once, each lane with teacher activations of its own (and on a GPU its "  \
        "own stream); 0 = auto: 2 on a GPU, 1 on the CPU with a teacher, else one per worker.")    \
    STR(teacher, path, "", FIXED,                                                                  \
        "Frozen teacher network (safetensors, see tmix.export) whose CAMs guide the mix.")         \
    ENUM(output, dtype, tmixd_dtype, TMIXD_DTYPES, "float32", FIXED,                               \
         "Image dtype of a batch when the trainer's hello does not choose one.")                   \
    ENUM(output, layout, tmixd_layout, TMIXD_LAYOUTS, "nchw", FIXED,                               \
         "Image layout of a batch when the trainer's hello does not choose one.")                  \
    INT(output, batch_size, 128, 1, 65536, FIXED,                                                  \
        "Images per batch when the trainer's hello does not choose a size.")                       \
    STR(search, out, "", FIXED,                                                                    \
        "The module file `tmixd search` writes (safetensors, what [mix] module loads); required "  \
        "for search.")                                                                             \
    STR(search, checkpoint, "", FIXED,                                                             \
        "Checkpoint of a search (weights, optimiser state, position), written atomically; empty = " \
        "OUT.ckpt.")                                                                               \
    STR(search, metrics, "", FIXED,                                                                \
        "Metrics of a search, a JSON object per step; empty = OUT.metrics.jsonl.")                 \
    INT(search, epochs, 100, 1, 1000000, FIXED, "Epochs over the data set.")                      \
    INT(search, steps, 0, 0, 2000000000, FIXED,                                                    \
        "Stop after this many steps in all (a short run); 0 = every epoch.")                       \
    INT(search, batch_size, 128, 1, 65536, FIXED, "Images per step.")                              \
    DBL(search, lr, 0.0005, GT, 0, 10, FIXED, "SGD learning rate.")                                \
    DBL(search, momentum, 0, GE, 0, 0.999, FIXED, "SGD momentum; 0 = plain SGD, as in the paper.") \
    DBL(search, weight_decay, 0.01, GE, 0, 1, FIXED, "SGD weight decay.")                          \
    INT(search, checkpoint_every, 500, 0, 2000000000, FIXED,                                       \
        "Steps between checkpoints, besides the end of each epoch; 0 = at epoch ends only.")        \
    INT(search, stn_size, 32, 20, 1024, FIXED, "Resolution the STN sees the CAMs at.")             \
    U64(search, seed, 0, FIXED,                                                                    \
        "Seed of the module's first weights and of every draw: order, crops, pairs, lambda, "      \
        "noise.")                                                                                  \
    STR(train, arch, "cifar_resnet20", FIXED,                                                      \
        "Classifier `tmixd train-teacher` trains from scratch (a zoo architecture).")              \
    STR(train, out, "", FIXED,                                                                     \
        "The teacher file train-teacher writes (what [teacher] path loads); required for it.")    \
    STR(train, checkpoint, "", FIXED,                                                              \
        "Checkpoint of train-teacher (weights, momentum, position); empty = OUT.ckpt.")            \
    STR(train, metrics, "", FIXED,                                                                 \
        "Metrics of train-teacher, a JSON object per step; empty = OUT.metrics.jsonl.")            \
    INT(train, epochs, 30, 1, 1000000, FIXED, "Epochs over the data set.")                        \
    INT(train, steps, 0, 0, 2000000000, FIXED,                                                     \
        "Stop after this many steps in all (a short run); 0 = every epoch. The learning rate "     \
        "still follows the schedule of every epoch.")                                              \
    INT(train, batch_size, 128, 2, 65536, FIXED, "Images per step.")                               \
    DBL(train, lr, 0.1, GT, 0, 10, FIXED,                                                          \
        "Peak SGD learning rate, annealed to 0 by a cosine over all epochs.")                      \
    DBL(train, momentum, 0.9, GE, 0, 0.999, FIXED, "SGD momentum.")                                 \
    DBL(train, weight_decay, 0.0005, GE, 0, 1, FIXED, "SGD weight decay.")                         \
    INT(train, checkpoint_every, 500, 0, 2000000000, FIXED,                                        \
        "Steps between checkpoints, besides the end of each epoch; 0 = at epoch ends only.")        \
    U64(train, seed, 0, FIXED, "Seed of the first weights and of every draw: order, crops, flips.") \
    INT(eval, samples, 0, 0, 2000000000, FIXED,                                                    \
        "Test images `tmixd eval` mixes (a seeded sample of the test split); 0 = all.")                  \
    INT(eval, batch_size, 128, 2, 65536, FIXED, "Images per batch of tmixd eval.")

#endif
