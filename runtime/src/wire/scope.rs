//! The scopes of public access tokens: `action:type[:id]`, as Trigger.dev grants them.
//!
//! Only the first two `:` separate: an id may hold more (`read:tags:env:prod` is tag
//! `env:prod`). Action `*` stands for any action, type `all` for any type, a scope without an
//! id for every resource of its type, and `admin` alone for everything.

/// What a request does to which resource: an action on a resource of a type, with its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resource<'a> {
    pub(crate) kind: &'a str,
    pub(crate) id: Option<&'a str>,
}

impl<'a> Resource<'a> {
    /// One resource.
    pub(crate) const fn one(kind: &'a str, id: &'a str) -> Self {
        Resource { kind, id: Some(id) }
    }

    /// Every resource of a type.
    pub(crate) const fn every(kind: &'a str) -> Self {
        Resource { kind, id: None }
    }
}

/// Whether `scope` grants `action` on `resource`. A grant of one resource does not grant every
/// resource of its type.
pub(crate) fn grants(scope: &str, action: &str, resource: Resource<'_>) -> bool {
    if scope == "admin" {
        return true;
    }
    let mut parts = scope.splitn(3, ':');
    let (Some(scope_action), Some(kind)) = (parts.next(), parts.next()) else {
        return false;
    };
    let id = parts.next();
    let action_matches = scope_action == "*" || scope_action == action;
    let kind_matches = kind == "all" || kind == resource.kind;
    let id_matches = match (id, resource.id) {
        (None, _) => true,
        (Some(granted), Some(wanted)) => granted == wanted,
        (Some(_), None) => false,
    };
    action_matches && kind_matches && id_matches
}

/// Whether any of `scopes` grants `action` on any of `resources`.
pub(crate) fn any_grants(scopes: &[String], action: &str, resources: &[Resource<'_>]) -> bool {
    scopes.iter().any(|scope| {
        resources
            .iter()
            .any(|&resource| grants(scope, action, resource))
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_scope_is_read_without_panicking(scope in ".{0,40}", action in "[a-z*]{0,8}", kind in "[a-z]{0,8}", id in proptest::option::of(".{0,12}")) {
            let _ = grants(&scope, &action, Resource { kind: &kind, id: id.as_deref() });
        }

        #[test]
        fn a_scope_grants_the_resource_it_names(action in "[a-zA-Z]{1,10}", kind in "[a-zA-Z]{1,10}", id in "[ -~]{1,20}") {
            let scope = format!("{action}:{kind}:{id}");
            prop_assert!(grants(&scope, &action, Resource::one(&kind, &id)));
            let other = format!("{id}x");
            prop_assert!(!grants(&scope, &action, Resource::one(&kind, &other)));
        }
    }

    #[test]
    fn scopes_grant_what_trigger_dev_grants() {
        let run = Resource::one("runs", "run_1");
        assert!(grants("read:runs:run_1", "read", run));
        assert!(grants("read:runs", "read", run));
        assert!(grants("*:runs:run_1", "read", run));
        assert!(grants("read:all", "read", run));
        assert!(grants("admin", "write", run));
        assert!(!grants("read:runs:run_2", "read", run));
        assert!(!grants("write:runs:run_1", "read", run));
        assert!(!grants("read:tags:run_1", "read", run));
        assert!(
            !grants("admin:runs", "read", run),
            "admin:<type> is no wildcard"
        );
        assert!(!grants("read", "read", run));
        assert!(!grants("read:runs:run_1", "read", Resource::every("runs")));
        let tag = Resource::one("tags", "env:prod");
        assert!(grants("read:tags:env:prod", "read", tag));
        assert!(!grants("read:tags:env", "read", tag));
    }
}
