// The loop of training commands (trainloop.h).
#include "trainloop.h"

#include <signal.h>
#include <string.h>

#include "error.h"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

int tmixd_train_loop(tmixd_trainlog *log, const tmixd_train_plan *plan,
                     const tmixd_train_ops *ops, void *ctx, bool *done)
{
    struct sigaction sa = {.sa_handler = on_stop}, old_term, old_int;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    stop_signal = 0;
    int rc = 0, epoch_steps = 0;
    int64_t images = 0;
    double epoch_loss = 0;
    while (rc == 0 && *plan->step < plan->steps && !stop_signal) {
        float loss = 0;
        int b = 0;
        char fields[256] = "";
        if ((rc = ops->step(ctx, &loss, &b, fields, sizeof fields)) < 0)
            break;
        const int64_t step = *plan->step, epoch = (step - 1) / plan->steps_per_epoch;
        images += b;
        epoch_loss += loss;
        epoch_steps++;
        if ((rc = tmixd_trainlog_step(log, step, epoch, images, loss, fields)) < 0)
            break;
        const bool epoch_end = step % plan->steps_per_epoch == 0;
        if (epoch_end) {
            char more[256] = "";
            if (ops->epoch_end && (rc = ops->epoch_end(ctx, epoch, more, sizeof more)) < 0)
                break;
            tmixd_trainlog_note(log, "epoch %lld done: mean loss %.4f%s", (long long)epoch,
                                epoch_loss / epoch_steps, more);
            epoch_loss = 0;
            epoch_steps = 0;
        }
        if (epoch_end || step == plan->steps ||
            (plan->checkpoint_every > 0 && step % plan->checkpoint_every == 0))
            rc = ops->save_checkpoint(ctx);
    }
    const int sig = stop_signal;
    if (rc == 0 && sig) {
        rc = ops->save_checkpoint(ctx);
        if (rc == 0)
            tmixd_trainlog_note(log, "%s at step %lld: checkpoint %s (--resume continues)",
                                strsignal(sig), (long long)*plan->step, plan->checkpoint);
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    *done = rc == 0 && *plan->step == plan->steps;
    return rc;
}
