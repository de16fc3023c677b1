// Finds and loads the CUDA backend plugin, once per process. Candidates, in order:
// $TMIX_CUDA_PLUGIN; ../lib/tmix/libtmix-cuda.so beside the running executable (installs
// and bundles); the configured install path; the build tree. Without a loadable plugin
// every CUDA query answers "no device", with the reason kept for the message.
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cuda_plugin.h"
#include "error.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static tmix_cuda_plugin_count_fn plugin_count;
static tmix_cuda_plugin_open_fn plugin_open;
static char why[512] = "tmix was built without the CUDA backend";

static bool try_load(const char *path)
{
    if (!path || !*path || access(path, F_OK) != 0)
        return false;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, sizeof why, "cannot load %s: %s", path, dlerror());
        return false;
    }
    tmix_cuda_plugin_abi_fn abi = (tmix_cuda_plugin_abi_fn)dlsym(h, TMIX_CUDA_PLUGIN_ABI_SYM);
    plugin_count = (tmix_cuda_plugin_count_fn)dlsym(h, TMIX_CUDA_PLUGIN_COUNT_SYM);
    plugin_open = (tmix_cuda_plugin_open_fn)dlsym(h, TMIX_CUDA_PLUGIN_OPEN_SYM);
    if (!abi || !plugin_count || !plugin_open || abi() != TMIX_CUDA_PLUGIN_ABI) {
        snprintf(why, sizeof why, "%s is not a tmix CUDA plugin of ABI %d", path,
                 TMIX_CUDA_PLUGIN_ABI);
        plugin_count = NULL;
        plugin_open = NULL;
        dlclose(h);
        return false;
    }
    return true; // kept loaded for the life of the process
}

static void load(void)
{
    if (try_load(getenv("TMIX_CUDA_PLUGIN")))
        return;
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/../lib/tmix/libtmix-cuda.so", exe);
            if (try_load(path))
                return;
        }
    }
#ifdef TMIX_CUDA_PLUGIN_INSTALLED
    if (try_load(TMIX_CUDA_PLUGIN_INSTALLED))
        return;
#endif
#ifdef TMIX_CUDA_PLUGIN_BUILD
    try_load(TMIX_CUDA_PLUGIN_BUILD);
#endif
}

int tmix_cuda_device_count(void)
{
    pthread_once(&once, load);
    return plugin_count ? plugin_count() : 0;
}

int tmix_backend_cuda_open(tmix_backend **out, int device)
{
    *out = NULL;
    pthread_once(&once, load);
    if (!plugin_open)
        return tmix_fail(TMIX_ENODEV, "cuda: %s", why);
    return plugin_open(out, device);
}

void tmix_backend_close(tmix_backend *be)
{
    if (be && be->ops->close)
        be->ops->close(be);
}

int tmix_backend_open(const char *name, tmix_backend **out)
{
    *out = tmix_backend_cpu();
    if (strcmp(name, "cpu") == 0)
        return 0;
    char *end = NULL;
    const long device = strcmp(name, "cuda") == 0 ? 0
                        : strncmp(name, "cuda:", 5) == 0 ? strtol(name + 5, &end, 10) : -1;
    if (device < 0 || device > INT_MAX || (end && (*end || end == name + 5)))
        return tmix_fail(TMIX_EINVAL, "backend '%s': expected cpu, cuda or cuda:N", name);
    const int rc = tmix_backend_cuda_open(out, (int)device);
    if (rc < 0)
        *out = tmix_backend_cpu();
    return rc;
}

int tmix_backend_set_precision(tmix_backend *be, tmix_precision p)
{
    if (p != TMIX_PRECISION_FP32 && p != TMIX_PRECISION_TF32 && p != TMIX_PRECISION_BF16)
        return tmix_fail(TMIX_EINVAL, "set_precision: precision %d is not fp32, tf32 or bf16",
                         (int)p);
    if (be->ops->set_precision)
        return be->ops->set_precision(be, p);
    return p == TMIX_PRECISION_FP32
               ? 0
               : tmix_fail(TMIX_ENOTSUP, "set_precision: %s computes in fp32 only", be->name);
}
