// A stand-in for the libcudart calls of client/python/tmix/_cuda.py, built as
// libcudart.so.99 so that test_loader.py (cuda_runtime) runs tmix's Runtime through ctypes
// on a machine without a GPU: it checks that the 64-byte IPC handles arrive whole, by value,
// with the flags CUDA expects, fails on demand, and records what it was given.
//
// Fake rules: the pointer (event) opened from a handle is fake_address(handle) (+ 1); a
// handle whose first byte is 0xee fails to open; devices 0 and 1 exist.
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char reserved[64];
} ipc_handle; // cudaIpcMemHandle_t, cudaIpcEventHandle_t

enum {
    SUCCESS = 0,
    INVALID_VALUE = 1,
    INVALID_DEVICE = 101,
    MAP_BUFFER_OBJECT_FAILED = 205,
    LAZY_ENABLE_PEER_ACCESS = 1
};

// What it exports: the calls as libcudart declares them, and the test's read-backs.
int cudaIpcOpenMemHandle(void **ptr, ipc_handle handle, unsigned flags);
int cudaIpcOpenEventHandle(void **event, ipc_handle handle);
int cudaIpcCloseMemHandle(void *ptr);
int cudaEventDestroy(void *event);
int cudaStreamWaitEvent(void *stream, void *event, unsigned flags);
int cudaGetDevice(int *device);
int cudaSetDevice(int device);
int cudaDeviceGetPCIBusId(char *bus, int len, int device);
const char *cudaGetErrorString(int error);
void *fake_last_closed(void);
void *fake_last_destroyed(void);
void fake_last_wait(void **stream, void **event, unsigned *flags);

static int current_device;
static void *last_closed, *last_destroyed, *last_stream, *last_event;
static unsigned last_flags = 99;

// Every byte weighs by its position, so that a byte lost or moved in passing shows.
static uintptr_t fake_address(const ipc_handle *h)
{
    uintptr_t sum = 0;
    for (int i = 0; i < 64; i++)
        sum += (uintptr_t)(i + 1) * (unsigned char)h->reserved[i];
    return 0x100000 + 16 * sum;
}

static int open_handle(void **out, const ipc_handle *h, uintptr_t offset)
{
    if (!out)
        return INVALID_VALUE;
    if ((unsigned char)h->reserved[0] == 0xee)
        return MAP_BUFFER_OBJECT_FAILED;
    *out = (void *)(fake_address(h) + offset);
    return SUCCESS;
}

int cudaIpcOpenMemHandle(void **ptr, ipc_handle handle, unsigned flags)
{
    return flags == LAZY_ENABLE_PEER_ACCESS ? open_handle(ptr, &handle, 0) : INVALID_VALUE;
}

int cudaIpcOpenEventHandle(void **event, ipc_handle handle)
{
    return open_handle(event, &handle, 1);
}

int cudaIpcCloseMemHandle(void *ptr)
{
    last_closed = ptr;
    return ptr ? SUCCESS : INVALID_VALUE;
}

int cudaEventDestroy(void *event)
{
    last_destroyed = event;
    return event ? SUCCESS : INVALID_VALUE;
}

int cudaStreamWaitEvent(void *stream, void *event, unsigned flags)
{
    last_stream = stream, last_event = event, last_flags = flags;
    return event ? SUCCESS : INVALID_VALUE;
}

int cudaGetDevice(int *device)
{
    *device = current_device;
    return SUCCESS;
}

int cudaSetDevice(int device)
{
    if (device < 0 || device > 1)
        return INVALID_DEVICE;
    current_device = device;
    return SUCCESS;
}

// Devices 0 and 1, as libcudart writes their ids.
int cudaDeviceGetPCIBusId(char *bus, int len, int device)
{
    if (device < 0 || device > 1)
        return INVALID_DEVICE;
    if (!bus || len < 13)
        return INVALID_VALUE;
    snprintf(bus, (size_t)len, "0000:%02X:00.0", 0x1a + device);
    return SUCCESS;
}

const char *cudaGetErrorString(int error)
{
    switch (error) {
    case INVALID_VALUE:
        return "invalid argument";
    case INVALID_DEVICE:
        return "invalid device ordinal";
    case MAP_BUFFER_OBJECT_FAILED:
        return "fake: mapping of buffer object failed";
    default:
        return "unrecognized error code";
    }
}

void *fake_last_closed(void)
{
    return last_closed;
}

void *fake_last_destroyed(void)
{
    return last_destroyed;
}

void fake_last_wait(void **stream, void **event, unsigned *flags)
{
    *stream = last_stream, *event = last_event, *flags = last_flags;
}
