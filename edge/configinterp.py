"""``${VAR}`` / ``${VAR:-default}`` / ``VAR_FILE`` in a parsed YAML tree, guided by the schema's field types.

A reference always yields a string: only the field's declared type converts it
(by pydantic, later), except that a ``Literal`` of numbers is matched by value.
A malformed reference is an error naming the field. With a ``section``, the
``Secret`` fields of every other top-level section are not interpolated at all
(``Withheld``: no variable or file is read), and a value there that is just an
unset variable leaves its field at the schema's default (that service's
environment has it, this one need not: the admin container is not given
``ZEROBUS_ENDPOINT``); inside a longer string an unset variable there is empty.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin

from edge.configtypes import fields_of, join, unwrap
from edge.configvalues import ConfigError, Secret, Withheld, hide_values

ChildType = Callable[[Any, dict, str, dict], Any]

_DEFAULT = object()  # "leave this key out": its field takes the schema's default
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Interpolation:
    """Resolves ${VAR} references in a parsed YAML tree, guided by the schema's field types.

    ``child(tp, hints, key, mapping)`` gives the declared type of ``mapping[key]``
    (the caller knows where the schema picks a type by value, like a source's
    ``type``). Records which paths took which variables (``origins``) and the values they
    gave (``values``), so that no error ever echoes them.
    """

    def __init__(self, env: dict[str, str], section: str | None, child: ChildType):
        self.env, self.section, self.child = env, section, child
        self.origins: dict[str, list[str]] = {}
        self.values: dict[str, str] = {}
        self.unset: set[str] = set()  # paths in other sections that named an unset variable

    def tree(self, tp: Any, value: Any, path: str) -> Any:
        tp = unwrap(tp)
        if isinstance(value, dict):
            hints = fields_of(tp) if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__") else {}
            renamed = getattr(tp, "RENAMED", {})
            out = {k: self.tree(self.child(tp, hints, renamed.get(k, k), value), v, join(path, str(k)))
                   for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not _DEFAULT}
        if isinstance(value, list):
            item = tp.__args__[0] if getattr(tp, "__origin__", None) is list else Any
            return [("" if v is _DEFAULT else v) for v in (self.tree(item, v, join(path, i)) for i, v in enumerate(value))]
        if tp is Secret and self.section is not None and path.split(".", 1)[0].split("[", 1)[0] != self.section:
            return Withheld()  # another service's secret: not read at all
        if not isinstance(value, str) or "${" not in value:
            return value
        out = self.string(value, path)
        if path in self.unset and _REF.fullmatch(value.strip()):
            return _DEFAULT  # another service's variable, unset here: the field keeps its default
        if get_origin(tp) is Literal:  # pydantic matches a Literal's members by type: "1" is not 1
            return next((a for a in get_args(tp) if not isinstance(a, str) and str(a) == out), out)
        return out

    def string(self, value: str, path: str) -> str:
        out, i = [], 0
        while (j := value.find("${", i)) >= 0:
            m = _REF.match(value, j)
            if m is None:
                raise ConfigError(path, "malformed variable reference: write ${NAME} or ${NAME:-default} "
                                        "(NAME: letters, digits and _, no spaces, closed by })")
            if m.group(2) is not None and "${" in m.group(2):
                # ${A:-${B}} would be read as the default "${B" and a "}": the literal text "${B}"
                raise ConfigError(path, "a default cannot hold another reference: ${NAME:-${OTHER}} is not supported")
            out.append(value[i:j])
            out.append(self.resolve(m.group(1), m.group(2), path))
            self.origins.setdefault(path, []).append(m.group(1))
            i = m.end()
        out.append(value[i:])
        return "".join(out)

    def resolve(self, var: str, default: str | None, path: str) -> str:
        env = self.env
        file_var = env.get(f"{var}_FILE")
        if env.get(var) or (var in env and not file_var):
            got = env[var]
        elif file_var:
            try:
                got = Path(file_var).read_text().strip()
            except OSError as exc:
                raise ConfigError(path, f"${{{var}}}: cannot read {var}_FILE ({exc.strerror})") from None
        elif default is not None:
            return default
        elif self.section is not None and path.split(".", 1)[0].split("[", 1)[0] != self.section:
            self.unset.add(path)
            return ""
        else:
            raise ConfigError(path, f"environment variable {var} is not set (nor {var}_FILE)")
        if got:
            self.values[got] = var
        return got

    def scrub(self, exc: ConfigError) -> ConfigError:
        """The error without any value a variable gave, each replaced by ${VAR} (``hide_values``)."""
        message = hide_values(exc.message, self.values)
        if message == exc.message:
            return exc
        return type(exc)(exc.path, message)
