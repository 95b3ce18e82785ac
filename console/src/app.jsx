// The shell: skip link, header with the menu and the user, the current page, toasts.
// Signed out, every path shows the login page; the path is kept, so after signing in
// the user is where the link pointed.
import { useEffect, useRef } from "preact/hooks";
import { Toasts, toastError } from "./components/toast.jsx";
import { Link, match, navigate, useLocation } from "./lib/router.jsx";
import { can, signOut, useUser } from "./lib/session.js";
import { LoginPage } from "./pages/login.jsx";
import { HOME, pages } from "./pages.js";

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link href={HOME}>Back to the devices</Link>
      </p>
    </section>
  );
}

function Forbidden() {
  return (
    <section>
      <h1>Not allowed</h1>
      <p>Your account does not have the permission this page needs.</p>
    </section>
  );
}

function Header({ user, path }) {
  const visible = pages.filter((page) => page.nav && (!page.permission || can(page.permission)));
  const onLogout = () => signOut().catch(toastError);
  return (
    <header class="topbar">
      <Link href={HOME} class="brand">
        Meadowlark
      </Link>
      <nav aria-label="Main">
        <ul class="nav">
          {visible.map((page) => (
            <li key={page.path}>
              <Link href={page.path} aria-current={path.startsWith(page.path) ? "page" : undefined}>
                {page.title}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <div class="user">
        <span class="user-name" title={user.domain}>
          {user.login} <span class="muted">{user.domain}</span>
        </span>
        <button type="button" class="button-secondary" onClick={onLogout}>
          Log out
        </button>
      </div>
    </header>
  );
}

export function App() {
  const user = useUser();
  const path = useLocation();
  const main = useRef(null);
  const found = user ? match(pages, path) : null;

  useEffect(() => {
    if (user && (path === "/" || path === "/login")) navigate(HOME, { replace: true });
  }, [user, path]);
  // After an in-app navigation, move the focus to the new page (as a page load would), so
  // keyboard and screen-reader users start at its content.
  const firstPath = useRef(path);
  useEffect(() => {
    if (path !== firstPath.current) main.current?.focus();
    firstPath.current = null;
  }, [path]);
  useEffect(() => {
    document.title = found ? `${found.route.title} · Meadowlark` : "Meadowlark console";
  }, [found?.route]);

  let content;
  if (!user) content = <LoginPage />;
  else if (!found) content = <NotFound />;
  else if (found.route.permission && !can(found.route.permission)) content = <Forbidden />;
  else content = <found.route.component {...found.params} />;

  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      {user && <Header user={user} path={path} />}
      <main id="main" ref={main} tabIndex={-1} class={user ? "page" : "page page-login"}>
        {content}
      </main>
      <Toasts />
    </>
  );
}
