// Signing in and out. The server keeps the session in an HttpOnly cookie the page never sees;
// the page keeps only the session's CSRF token, in memory (api.setCsrfToken). /auth/me says
// who is signed in: a session, a token, or "loopback" (a server run with --trust-loopback,
// where nobody signs in).
import { HttpError, type Me, getMe, login, logout } from './api';
import { byId } from './util';

/** Who is signed in; null when nobody is (401). A server without /auth (404) is open. */
export async function whoAmI(): Promise<Me | null> {
  try {
    return await getMe();
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) return null;
    if (err instanceof HttpError && err.status === 404) return { name: '', role: 'loopback', kind: 'loopback', csrf_token: null };
    throw err;
  }
}

export async function signIn(username: string, password: string): Promise<Me> {
  const res = await login(username, password);
  return { name: res.username, role: res.role, kind: 'session', csrf_token: res.csrf_token };
}

/** Ends the session on the server (the cookie is cleared by its answer). */
export async function signOut(): Promise<void> {
  await logout();
}

/** May this caller acknowledge and silence alerts? (viewer: read only) */
export function canActOnAlerts(me: Me | null): boolean {
  return !!me && me.role !== 'viewer';
}

const ROLE_LABELS: Record<Me['role'], string> = { viewer: 'Viewer', clinician: 'Clinician', admin: 'Administrator', device: 'Device', loopback: 'Trusted workstation' };

/** The header's "who is signed in" block; nothing for a trusted loopback client. */
export function showUser(me: Me | null): void {
  const box = byId('user');
  box.hidden = !me || me.kind === 'loopback';
  byId('user-name').textContent = me?.name ?? '';
  byId('user-role').textContent = me ? ROLE_LABELS[me.role] : '';
  byId('sign-out').hidden = me?.kind !== 'session';
}

let throttleTimer = 0;
/** The user name a 429 was for: the wait applies to it, not to another user at this screen. */
let throttledUser: string | null = null;

/** Shows the sign-in form (and hides the dashboard); `notice` says why, e.g. the session ended. */
export function showLogin(notice = ''): void {
  showUser(null);
  byId('app').hidden = true;
  byId('conn').hidden = true;
  byId('login').hidden = false;
  const n = byId('login-notice');
  n.textContent = notice;
  n.hidden = !notice;
  byId<HTMLInputElement>('login-password').value = '';
  const user = byId<HTMLInputElement>('login-user');
  (user.value ? byId<HTMLInputElement>('login-password') : user).focus();
}

export function hideLogin(): void {
  byId('login').hidden = true;
  byId('app').hidden = false;
  byId('conn').hidden = false;
  endThrottle();
  setLoginError('');
  byId('login-notice').hidden = true;
}

function setLoginError(text: string): void {
  const el = byId('login-error');
  el.textContent = text;
  el.hidden = !text;
}

function endThrottle(): void {
  window.clearInterval(throttleTimer);
  throttledUser = null;
  byId<HTMLButtonElement>('login-submit').disabled = false;
}

/** A 429's wait, counted down on the form; the button stays disabled until it is over or
 *  another user name is typed in. */
function throttled(username: string, seconds: number): void {
  const submit = byId<HTMLButtonElement>('login-submit');
  window.clearInterval(throttleTimer);
  throttledUser = username;
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      endThrottle();
      setLoginError('You may try again now.');
      return;
    }
    submit.disabled = true;
    const wait = left >= 120 ? `${Math.ceil(left / 60)} minutes` : `${left} s`;
    setLoginError(`Too many failed sign-ins. Try again in ${wait}.`);
  };
  tick();
  throttleTimer = window.setInterval(tick, 1000);
}

/** Wires the form: submitted with fetch (the CSP forbids form actions), never navigates. */
export function bindLogin(signedIn: (me: Me) => void): void {
  const form = byId<HTMLFormElement>('login-form');
  const submit = byId<HTMLButtonElement>('login-submit');
  byId('login-user').addEventListener('input', (e) => {
    if (throttledUser !== null && (e.currentTarget as HTMLInputElement).value.trim() !== throttledUser) {
      endThrottle();
      setLoginError('');
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (submit.disabled) return;
    const user = byId<HTMLInputElement>('login-user');
    const password = byId<HTMLInputElement>('login-password');
    const username = user.value.trim();
    if (!username || !password.value) {
      setLoginError('Enter your user name and password.');
      (username ? password : user).focus();
      return;
    }
    submit.disabled = true;
    setLoginError('');
    byId('login-notice').hidden = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const me = await signIn(username, password.value);
      password.value = '';
      submit.disabled = false;
      signedIn(me);
    } catch (err) {
      submit.disabled = false;
      password.value = '';
      password.focus();
      if (err instanceof HttpError && err.status === 429) {
        throttled(username, err.retryAfterS ?? 60);
      } else if (err instanceof HttpError && err.status === 401) {
        setLoginError('Unknown user name or wrong password.');
      } else if (err instanceof HttpError) {
        setLoginError(`Sign-in failed: ${err.detail || `HTTP ${err.status}`}.`);
      } else {
        setLoginError('The server cannot be reached. Check the connection and try again.');
        console.error(err);
      }
    } finally {
      form.removeAttribute('aria-busy');
    }
  });
}
