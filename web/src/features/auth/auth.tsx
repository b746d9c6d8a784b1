import { useQueryClient } from '@tanstack/react-query';
import { createContext, useContext, useEffect, useState, type ReactNode } from 'react';
import { refreshSession, session } from '../../api/client';
import type { SessionUser } from '../../api/types';

type AuthState = { status: 'restoring' } | { status: 'signed-out' } | { status: 'signed-in'; user: SessionUser };
const AuthContext = createContext<AuthState>({ status: 'restoring' });

/** Restores the session from the refresh cookie at load, then follows sign-in and sign-out. */
export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [state, setState] = useState<AuthState>(() => {
    const s = session.get();
    return s ? { status: 'signed-in', user: s.user } : { status: 'restoring' };
  });
  useEffect(() => {
    const unsubscribe = session.subscribe((s) => {
      if (!s) queryClient.clear();
      setState(s ? { status: 'signed-in', user: s.user } : { status: 'signed-out' });
    });
    if (!session.get()) {
      refreshSession()
        .then((s) => {
          if (!s) setState({ status: 'signed-out' });
        })
        .catch(() => setState({ status: 'signed-out' }));
    }
    return unsubscribe;
  }, [queryClient]);
  return <AuthContext.Provider value={state}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  return useContext(AuthContext);
}

/** The signed-in user; only for components under a signed-in route. */
export function useUser(): SessionUser {
  const state = useAuth();
  if (state.status !== 'signed-in') throw new Error('useUser outside a signed-in route');
  return state.user;
}
