// tmix_config_get / tmix_config_set: one ConfigRequest on a socket of its own, answered
// without a session.
#include <stdlib.h>

#include "internal.h"

// The caller's pointer is &pub; the strings point into env.
typedef struct {
    tmix_config pub;
    tmix_setting *settings;
    Tmix__Envelope *env;
} config_reply;

static int ask(const char *endpoint, const char *key, const char *value, int set, int timeout_ms,
               Tmix__Envelope **rep, char *err)
{
    Tmix__ConfigRequest cr = TMIX__CONFIG_REQUEST__INIT;
    cr.key = (char *)(key ? key : "");
    cr.value = (char *)(value ? value : "");
    cr.set = set;
    Tmix__Envelope req = TMIX__ENVELOPE__INIT;
    req.body_case = TMIX__ENVELOPE__BODY_CONFIG_REQUEST;
    req.config_request = &cr;
    return tmixi_request(endpoint, timeout_ms, &req, TMIX__ENVELOPE__BODY_CONFIG, rep, err);
}

int tmix_config_get(const char *endpoint, const char *key, int timeout_ms, tmix_config **out)
{
    char *err = tmixi_thread_error();
    if (!out || !endpoint)
        return tmixi_fail(err, TMIX_EINVAL, "tmix_config_get: %s is NULL",
                          out ? "endpoint" : "out");
    *out = NULL;
    Tmix__Envelope *rep;
    int rc = ask(endpoint, key, NULL, 0, timeout_ms, &rep, err);
    if (rc < 0)
        return rc;
    const Tmix__Config *c = rep->config;
    config_reply *r = calloc(1, sizeof *r);
    tmix_setting *settings = calloc(c->n_settings ? c->n_settings : 1, sizeof *settings);
    if (!r || !settings) {
        free(r);
        free(settings);
        tmixi_envelope_free(rep);
        return tmixi_fail(err, TMIX_ENOMEM, "%s: no memory for the settings", endpoint);
    }
    for (size_t i = 0; i < c->n_settings; i++)
        settings[i] =
            (tmix_setting){c->settings[i]->key, c->settings[i]->value, c->settings[i]->reloadable};
    *r = (config_reply){.pub = {c->n_settings, settings}, .settings = settings, .env = rep};
    *out = &r->pub;
    return 0;
}

void tmix_config_free(tmix_config *c)
{
    if (!c)
        return;
    config_reply *r = (config_reply *)c;
    tmixi_envelope_free(r->env);
    free(r->settings);
    free(r);
}

int tmix_config_set(const char *endpoint, const char *key, const char *value, int timeout_ms)
{
    char *err = tmixi_thread_error();
    if (!endpoint || !key || !value)
        return tmixi_fail(err, TMIX_EINVAL, "tmix_config_set: %s is NULL",
                          !endpoint ? "endpoint"
                          : !key    ? "key"
                                    : "value");
    Tmix__Envelope *rep;
    const int rc = ask(endpoint, key, value, 1, timeout_ms, &rep, err);
    if (rc == 0)
        tmixi_envelope_free(rep);
    return rc;
}
