"""djtasks.conf: defaults, DJTASKS + environment, validation messages, censoring."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ImproperlyConfigured as DjangoImproperlyConfigured

from djtasks import conf
from djtasks.exceptions import ImproperlyConfigured

# -- defaults ---------------------------------------------------------------------------------


def test_defaults_match_celery_and_the_design():
    settings = conf.load({}, {})
    assert settings.broker_url == "django://"
    assert settings.result_backend == "django-db"
    assert settings.task_serializer == "json"
    assert settings.accept_content == ["json"]
    assert settings.task_default_queue == "celery"


def test_every_option_has_a_default_of_its_declared_type():
    settings = conf.load(None, {})
    assert set(settings) == set(conf.OPTIONS)
    for key, option in conf.OPTIONS.items():
        value = settings[key]
        assert (value is None and option.nullable) or isinstance(value, option.type), key
        assert option.help, key


def test_none_configured_is_the_defaults():
    assert dict(conf.load(None, {})) == dict(conf.load({}, {}))


def test_djtasks_must_be_a_mapping():
    with pytest.raises(ImproperlyConfigured, match="DJTASKS must be a dict of settings, got list"):
        conf.load(["broker_url"], {})


def test_settings_read_by_key_and_by_attribute():
    settings = conf.load({"task_default_queue": "jobs"}, {})
    assert settings["task_default_queue"] == settings.task_default_queue == "jobs"
    assert len(settings) == len(conf.OPTIONS)


def test_unknown_attribute_names_the_closest_key():
    settings = conf.load({}, {})
    with pytest.raises(AttributeError, match="did you mean 'broker_url'"):
        _ = settings.broker_ur


def test_settings_are_read_only():
    settings = conf.load({}, {})
    with pytest.raises(TypeError):
        settings["broker_url"] = "memory://"  # type: ignore[index]


def test_a_default_is_not_shared_between_loads():
    # Settings hand out their list and dict values; mutating one must not change the table's
    # default, which every later load (every App) starts from.
    first = conf.load({}, {})
    first.accept_content.append("pickle")
    first.broker_transport_options["visibility_timeout"] = 1
    try:
        assert conf.OPTIONS["accept_content"].default == ["json"]
        assert conf.load({}, {}).accept_content == ["json"]
        assert conf.load({}, {}).broker_transport_options == {}
    finally:  # repair the shared default for the other tests if it was changed
        conf.OPTIONS["accept_content"].default[:] = ["json"]
        conf.OPTIONS["broker_transport_options"].default.clear()


# -- using() ----------------------------------------------------------------------------------


def test_using_returns_a_changed_copy():
    settings = conf.load({}, {})
    changed = settings.using(task_default_queue="jobs", broker_url="memory://")
    assert changed.task_default_queue == "jobs"
    assert changed.broker_url == "memory://"
    assert settings.task_default_queue == "celery"
    assert settings.broker_url == "django://"


def test_using_checks_keys_and_types():
    settings = conf.load({}, {})
    with pytest.raises(ImproperlyConfigured, match="did you mean 'task_default_queue'"):
        settings.using(task_default_queu="jobs")
    with pytest.raises(ImproperlyConfigured, match="expected int, got str"):
        settings.using(broker_pool_limit="10")


def test_settings_can_be_copied():
    settings = conf.load({"task_default_queue": "jobs"}, {})
    assert dict(copy.copy(settings)) == dict(settings)
    assert dict(copy.deepcopy(settings)) == dict(settings)


# -- validation -------------------------------------------------------------------------------


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load({"broker_urll": "memory://"}, {})
    assert "'broker_urll'" in str(info.value)
    assert "did you mean 'broker_url'?" in str(info.value)


def test_unknown_key_is_also_djangos_improperly_configured():
    with pytest.raises(DjangoImproperlyConfigured):
        conf.load({"task_acks_lat": True}, {})


def test_unknown_key_without_a_close_match_has_no_hint():
    message = conf.unknown_key_message("zzzzzz")
    assert message == "unknown djtasks setting 'zzzzzz'"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("broker_pool_limit", "10", "expected int, got str"),
        ("broker_url", 5, "expected str, got int"),
        ("accept_content", "json", "expected list, got str"),
        ("task_publish_retry_policy", [1], "expected dict, got list"),
        ("broker_connection_timeout", "4", "expected int or float, got str"),
        ("task_acks_late", "yes", "expected bool, got str"),
    ],
)
def test_wrong_type_says_expected_and_got(key, value, expected):
    with pytest.raises(ImproperlyConfigured, match=expected):
        conf.load({key: value}, {})


def test_a_bool_is_not_a_number():
    with pytest.raises(ImproperlyConfigured, match="expected a number, got True"):
        conf.load({"broker_pool_limit": True}, {})


def test_nullable_options_accept_none_and_others_do_not():
    assert conf.load({"worker_concurrency": None}, {}).worker_concurrency is None
    with pytest.raises(ImproperlyConfigured, match="expected str, got NoneType"):
        conf.load({"broker_url": None}, {})


def test_a_tuple_is_accepted_as_a_list():
    assert conf.load({"accept_content": ("json", "msgpack")}, {}).accept_content == [
        "json", "msgpack",
    ]


def test_an_int_is_accepted_where_a_float_is():
    assert conf.load({"broker_connection_timeout": 2}, {}).broker_connection_timeout == 2


def test_task_routes_may_be_a_single_callable():
    def router(name, args, kwargs, options, task=None, **kw):
        return None

    assert conf.load({"task_routes": router}, {}).task_routes is router
    with pytest.raises(ImproperlyConfigured):
        conf.load({"worker_pool": router}, {})


# -- environment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "key", "expected"),
    [
        ("DJTASKS_BROKER_URL", "memory://", "broker_url", "memory://"),
        ("DJTASKS_BROKER_POOL_LIMIT", "3", "broker_pool_limit", 3),
        ("DJTASKS_WORKER_CONCURRENCY", "8", "worker_concurrency", 8),
        ("DJTASKS_BROKER_CONNECTION_TIMEOUT", "0.5", "broker_connection_timeout", 0.5),
        ("DJTASKS_TASK_ALWAYS_EAGER", "true", "task_always_eager", True),
        ("DJTASKS_TASK_ALWAYS_EAGER", "1", "task_always_eager", True),
        ("DJTASKS_ENABLE_UTC", "false", "enable_utc", False),
        ("DJTASKS_ENABLE_UTC", "0", "enable_utc", False),
        ("DJTASKS_ACCEPT_CONTENT", "json,msgpack", "accept_content", ["json", "msgpack"]),
        ("DJTASKS_BROKER_TRANSPORT_OPTIONS", '{"visibility_timeout": 60}',
         "broker_transport_options", {"visibility_timeout": 60}),
        ("DJTASKS_TASK_PUBLISH_RETRY_POLICY", '{"max_retries": 1}',
         "task_publish_retry_policy", {"max_retries": 1}),
        ("DJTASKS_TASK_ROUTES", '{"a.*": "queue_a"}', "task_routes", {"a.*": "queue_a"}),
    ],
)
def test_environment_is_typed_by_the_table(variable, raw, key, expected):
    value = conf.load({}, {variable: raw})[key]
    assert value == expected
    assert type(value) is type(expected)


def test_environment_list_items_are_stripped():
    settings = conf.load({}, {"DJTASKS_ACCEPT_CONTENT": "json, msgpack"})
    assert settings.accept_content == ["json", "msgpack"]


def test_environment_beats_djtasks():
    settings = conf.load(
        {"task_default_queue": "from-settings", "broker_pool_limit": 1},
        {"DJTASKS_TASK_DEFAULT_QUEUE": "from-env"},
    )
    assert settings.task_default_queue == "from-env"
    assert settings.broker_pool_limit == 1


def test_load_reads_os_environ_when_no_environment_is_given(monkeypatch):
    monkeypatch.setenv("DJTASKS_TASK_DEFAULT_QUEUE", "from-os-environ")
    assert conf.load({}).task_default_queue == "from-os-environ"


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("DJTASKS_BROKER_POOL_LIMIT", "ten", "DJTASKS_BROKER_POOL_LIMIT: expected int, got 'ten'"),
        ("DJTASKS_BROKER_CONNECTION_TIMEOUT", "soon", "expected int or float, got 'soon'"),
        ("DJTASKS_BROKER_TRANSPORT_OPTIONS", "{not json", "TRANSPORT_OPTIONS: expected dict, got"),
        ("DJTASKS_TASK_PUBLISH_RETRY_POLICY", "[1, 2]", "expected dict, got list"),
    ],
)
def test_environment_of_the_wrong_type_says_expected_and_got(variable, raw, expected):
    with pytest.raises(ImproperlyConfigured, match=expected):
        conf.load({}, {variable: raw})


def test_environment_bool_that_is_not_a_bool_is_refused():
    # "ture" is a typo of "true"; reading it as False would silently change behaviour.
    with pytest.raises(ImproperlyConfigured, match="DJTASKS_TASK_ALWAYS_EAGER"):
        conf.load({}, {"DJTASKS_TASK_ALWAYS_EAGER": "ture"})


def test_environment_near_miss_is_an_error():
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load({}, {"DJTASKS_BROKER_ULR": "memory://"})
    assert "DJTASKS_BROKER_ULR" in str(info.value)
    assert "did you mean 'broker_url'?" in str(info.value)


def test_unrelated_djtasks_variables_are_ignored():
    environment = {
        "DJTASKS_TESTS_SQLITE_PATH": "/tmp/x.sqlite3",
        "DJTASKS_TESTS_LOGLEVEL": "DEBUG",
        "DJTASKS_SOMETHING_ELSE": "1",
        "PATH": "/usr/bin",
        "BROKER_URL": "amqp://elsewhere//",
    }
    assert dict(conf.load({}, environment)) == dict(conf.load({}, {}))


def test_environment_variable_error_does_not_show_a_secret():
    # A JSON value cut short (a missing brace) must not be echoed with the password inside.
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load({}, {"DJTASKS_BROKER_TRANSPORT_OPTIONS": '{"password": "hunter2"'})
    assert "DJTASKS_BROKER_TRANSPORT_OPTIONS" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- censoring --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://user:pw@host//", "amqp://user:********@host//"),
        ("amqp://user:pw@host:5672/vhost", "amqp://user:********@host:5672/vhost"),
        ("redis://:pw@host:6379/0", "redis://:********@host:6379/0"),
        ("postgres://app:pw@db.example.com:5432/app", "postgres://app:********@db.example.com:5432/app"),
        ("postgresql://app:p%40ss@db/app?sslmode=require",
         "postgresql://app:********@db/app?sslmode=require"),
        ("amqp://user:p@ss@host//", "amqp://user:********@host//"),
        ("amqp://user:pa/ss@host//", "amqp://user:********@host//"),
        ("redis://:a?b#c@host:6379/0", "redis://:********@host:6379/0"),
        ("amqp://user:pa#ss@host/vhost", "amqp://user:********@host/vhost"),
    ],
)
def test_censor_url_hides_the_password(url, expected):
    assert conf.censor_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["django://", "memory://", "redis://host:6379/0", "amqp://guest@host//", "django-db", ""],
)
def test_censor_url_leaves_urls_without_password_alone(url):
    assert conf.censor_url(url) == url


def test_censor_url_hides_every_password_of_a_failover_url():
    # kombu reads "url1;url2" as failover brokers, Celery documents it for broker_url.
    censored = conf.censor_url("amqp://u:first-secret@h1//;amqp://u:second-secret@h2//")
    assert "first-secret" not in censored
    assert "second-secret" not in censored


def test_censor_url_hides_the_password_of_an_unparsable_url():
    censored = conf.censor_url("amqp://u:sekrit@[h1//")
    assert "sekrit" not in censored


@pytest.mark.parametrize(
    "key", ["secret", "password", "token", "api_key", "apikey", "broker_password", "AUTH_TOKEN",
            "access_key_id", "X-Api-Key", "db_pass", "passwd", "authToken", "Authorization",
            "signature", "aws_credentials", "private_key", "ssl_keyfile"],
)
def test_censor_hides_values_of_secret_named_keys(key):
    assert conf.censor(key, "hunter2") == conf.CENSORED


def test_censor_keeps_empty_secrets_visible_as_empty():
    assert conf.censor("password", "") == ""
    assert conf.censor("token", None) is None


def test_censor_hides_nested_secrets():
    options = {
        "visibility_timeout": 60,
        "password": "hunter2",
        "sentinel_kwargs": {"password": "hunter3", "socket_timeout": 1},
        "fallback": "redis://:hunter4@other:6379/0",
    }
    censored = conf.censor("broker_transport_options", options)
    assert censored == {
        "visibility_timeout": 60,
        "password": conf.CENSORED,
        "sentinel_kwargs": {"password": conf.CENSORED, "socket_timeout": 1},
        "fallback": "redis://:********@other:6379/0",
    }
    assert options["password"] == "hunter2"  # the input is not changed


def test_censor_hides_urls_inside_lists():
    censored = conf.censor("broker_transport_options", {"urls": ["redis://:hunter2@h:6379/0"]})
    assert "hunter2" not in repr(censored)


@pytest.mark.parametrize(
    "key", ["task_default_routing_key", "routing_key", "global_keyprefix", "visibility_timeout",
            "sentinel_kwargs", "master_name", "monkey_patch"],
)
def test_names_made_of_harmless_words_are_not_secret(key):
    assert not conf.is_secret_name(key)


@pytest.mark.parametrize(("url", "char"), [
    ("amqp://user:pa/ss@rabbit//", "/"),
    ("redis://:hunt?er@redis:6379/0", "?"),
    ("amqp://u:ok@h1//;amqp://user:hun#ter@h2//", "#"),
])
def test_a_url_whose_password_holds_an_unescaped_separator_is_refused_without_showing_it(url, char):
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.load({"broker_url": url}, {})
    message = str(caught.value)
    assert message.startswith("DJTASKS['broker_url']: the password in ")
    assert f"holds an unescaped {char!r}: percent-encode it" in message
    for secret in ("pa/ss", "hunt?er", "hun#ter", "ss@", "er@"):
        assert secret not in message


@pytest.mark.parametrize("url", [
    "amqp://user:pa%2Fss@rabbit//", "redis://redis:6379/0?name=a@b", "amqp://guest@h//",
    "django://", "postgres://app:pw@db/app?sslmode=require",
])
def test_urls_with_escaped_or_no_passwords_are_accepted(url):
    assert conf.load({"result_backend": "django-db", "broker_url": url}, {}).broker_url == url


def test_censor_leaves_plain_values_alone():
    assert conf.censor("task_default_queue", "celery") == "celery"
    assert conf.censor("broker_pool_limit", 10) == 10
    assert conf.censor("accept_content", ["json"]) == ["json"]


def test_censored_settings_never_contain_a_secret():
    secrets = ["pw-broker", "pw-options", "pw-nested", "pw-url-in-options"]
    settings = conf.load(
        {
            "broker_url": "amqp://user:pw-broker@rabbit:5672//",
            "broker_transport_options": {
                "password": "pw-options",
                "sentinel_kwargs": {"password": "pw-nested"},
                "fallback": "redis://:pw-url-in-options@h/0",
            },
        },
        {"DJTASKS_RESULT_BACKEND": "django-db"},
    )
    censored = settings.censored()
    assert set(censored) == set(conf.OPTIONS)
    assert censored["broker_url"] == "amqp://user:********@rabbit:5672//"
    text = repr(censored)
    for secret in secrets:
        assert secret not in text
    # censoring makes a copy: the settings themselves are intact
    assert settings.broker_url == "amqp://user:pw-broker@rabbit:5672//"
