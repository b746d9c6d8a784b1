import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { lazy, Suspense, type ReactNode } from 'react';
import { createBrowserRouter, Navigate, RouterProvider, useLocation } from 'react-router';
import { ApiError } from './api/client';
import { I18nProvider, useI18n } from './i18n/i18n';
import { AuthProvider, useAuth } from './features/auth/auth';
import { SignInPage } from './features/auth/sign-in-page';
import { ChatRoute } from './features/chat/chat-page';
import { Shell } from './features/shell/shell';
import { ThemeProvider } from './features/shell/theme';
import { NotFoundPage } from './features/shell/not-found-page';

// Pages most people rarely open are separate chunks, loaded on first visit.
const ProfilePage = lazy(() => import('./features/profile/profile-page'));
const AdminPage = lazy(() => import('./features/admin/admin-page'));
const SharedPage = lazy(() => import('./features/sharing/shared-page'));

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 10_000,
      refetchOnWindowFocus: false,
      // A 4xx will not get better by asking again.
      retry: (count, err) => !(err instanceof ApiError && err.status >= 400 && err.status < 500) && count < 2,
    },
  },
});

function Loading() {
  const { t } = useI18n();
  return (
    <div className="page-loading" role="status">
      {t('common.loading')}
    </div>
  );
}

function RequireAuth({ children }: { children: ReactNode }) {
  const auth = useAuth();
  const location = useLocation();
  if (auth.status === 'restoring') return <Loading />;
  if (auth.status === 'signed-out') return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  return children;
}

function RequireAdmin({ children }: { children: ReactNode }) {
  const auth = useAuth();
  const { t } = useI18n();
  if (auth.status !== 'signed-in' || auth.user.role !== 'admin') {
    return (
      <main id="main" className="page narrow">
        <h1>{t('admin.title')}</h1>
        <p role="alert" data-testid="admin-forbidden">
          {t('admin.forbidden')}
        </p>
      </main>
    );
  }
  return children;
}

const router = createBrowserRouter([
  { path: '/login', element: <SignInPage /> },
  {
    // Outside the sign-in guard: the server says whether a link needs a signed-in viewer.
    path: '/s/:token',
    element: (
      <Suspense fallback={<Loading />}>
        <SharedPage />
      </Suspense>
    ),
  },
  {
    element: (
      <RequireAuth>
        <Shell />
      </RequireAuth>
    ),
    children: [
      { index: true, element: <ChatRoute /> },
      { path: 'c/:sessionId', element: <ChatRoute /> },
      {
        path: 'profile',
        element: (
          <Suspense fallback={<Loading />}>
            <ProfilePage />
          </Suspense>
        ),
      },
      {
        path: 'admin/*',
        element: (
          <RequireAdmin>
            <Suspense fallback={<Loading />}>
              <AdminPage />
            </Suspense>
          </RequireAdmin>
        ),
      },
      { path: '*', element: <NotFoundPage /> },
    ],
  },
]);

export function App() {
  return (
    <QueryClientProvider client={queryClient}>
      <I18nProvider>
        <ThemeProvider>
          <AuthProvider>
            <RouterProvider router={router} />
          </AuthProvider>
        </ThemeProvider>
      </I18nProvider>
    </QueryClientProvider>
  );
}
